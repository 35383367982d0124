"""How service processes connect to Redis."""
from __future__ import annotations

import redis

from funcx.defaults import setting


def redis_url() -> str:
    url = str(setting("REDIS_URL"))
    if not url:
        raise RuntimeError(
            "FUNCX_REDIS_URL is not set; service processes get it from `funcx service start`"
        )
    return url


def redis_ca() -> str | None:
    """The CA file a ``rediss://`` service Redis is verified against:
    ``FUNCX_REDIS_CA``, else ``FUNCX_TLS_CA``; None: the system store."""
    return str(setting("REDIS_CA")) or str(setting("TLS_CA")) or None


def tls_options(url: str) -> dict:
    """Connection options a ``rediss://`` URL needs (the CA, hostname checked)."""
    if not url.startswith("rediss://"):
        return {}
    ca = redis_ca()
    return {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
            **({"ssl_ca_certs": ca} if ca else {})}


def connect(url: str | None = None, **kw) -> redis.Redis:
    """A client with decoded (str) responses and a health-checked pool;
    ``rediss://`` verified against :func:`redis_ca`."""
    url = url or redis_url()
    # keepalive is TCP's (a Unix socket, the embedded TLS Redis's local one, has none)
    tcp = {} if url.startswith("unix://") else {"socket_keepalive": True}
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        health_check_interval=30,
        **{**tcp, **tls_options(url), **kw},
    )


def raw_twin(r: redis.Redis) -> redis.Redis:
    """A client to the same server with the same credentials and transport
    (TLS included: the connection class travels too) whose replies are bytes."""
    pool = r.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class,
        **{**pool.connection_kwargs, "decode_responses": False}))
