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


def connect(url: str | None = None, **kw) -> redis.Redis:
    """A client with decoded (str) responses and a health-checked pool."""
    return redis.Redis.from_url(
        url or redis_url(),
        decode_responses=True,
        health_check_interval=30,
        socket_keepalive=True,
        **kw,
    )


def raw_twin(r: redis.Redis) -> redis.Redis:
    """A client to the same server with the same credentials and transport
    (TLS included: the connection class travels too) whose replies are bytes."""
    pool = r.connection_pool
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class,
        **{**pool.connection_kwargs, "decode_responses": False}))
