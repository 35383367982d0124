"""The agent's connection to the service's Redis: TLS when the URL is
``rediss://`` (certificate and host name verified against the CA the service
handed out, else ``FUNCX_CA_BUNDLE`` / ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``,
else the system store), and a bounded check at start that it answers, whose error names the
address and the likely cause, never the password.
"""
from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from funcx.errors import FuncxError
from funcx.sdk.tls import ca_bundle

log = logging.getLogger("funcx.agent")
CA_FILE = "redis-ca.pem"  # in the run dir: the CA the service handed out


class RedisUnreachable(FuncxError):
    """The endpoint's Redis (as handed out by the service) does not answer:
    the message names host:port and what to check."""


def where(url: str) -> str:
    """``host:port`` of a Redis URL (no user, no password)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port or 6379
    except ValueError:
        return "an unparsable Redis URL"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}"


def ca_options(info: dict, run_dir: Path) -> dict:
    """redis-py's CA options to verify the Redis server with: the service's
    ``redis_ca`` (PEM, written 0600 into ``run_dir``), else the SDK's trust
    store (``FUNCX_CA_BUNDLE``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``: a
    file or a c_rehash directory), else none (the system store)."""
    pem = info.get("redis_ca")
    if isinstance(pem, str) and "BEGIN CERTIFICATE" in pem:
        path = run_dir / CA_FILE
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pem)
        os.chmod(path, 0o600)
        return {"ssl_ca_certs": str(path)}
    store = ca_bundle()
    if store.path is None:
        return {}
    return {"ssl_ca_path": store.path} if store.is_dir else {"ssl_ca_certs": store.path}


def connect(info: dict, run_dir: Path, **kwargs) -> redis.Redis:
    """A client of the Redis in the registration answer ``info`` (TLS for
    ``rediss://``, verified)."""
    url = info["redis_url"]
    options: dict = {"decode_responses": True, "socket_keepalive": True,
                     "health_check_interval": 15}
    if url.startswith("rediss://"):
        options.update(ssl_cert_reqs="required", ssl_check_hostname=True,
                       **ca_options(info, run_dir))
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def likely_cause(url: str, error: BaseException) -> str:
    """What most likely keeps ``url`` from answering, in words."""
    host = urlsplit(url).hostname or ""
    text = str(error)
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    if isinstance(error, ssl.SSLError) or "SSL" in text or "certificate" in text.lower():
        return ("the TLS handshake failed: the server's certificate is not trusted by the CA "
                "given (the service's redis_ca, FUNCX_CA_BUNDLE or REQUESTS_CA_BUNDLE) or does "
                "not name this host")
    if isinstance(error, redis.AuthenticationError) or any(
            x in text for x in ("WRONGPASS", "NOAUTH", "NOPERM", "invalid username-password")):
        return "the endpoint's Redis credentials were refused; register the endpoint again"
    if loopback:
        return ("the service handed out a loopback address: it reaches only the service's own "
                "host; on the service host set FUNCX_REDIS_PUBLIC_HOST (and serve Redis on a "
                "routable address, over TLS)")
    if isinstance(error, redis.TimeoutError) or "timed out" in text.lower():
        return ("no answer in time: a firewall may drop the traffic, or the host is down")
    if "refused" in text.lower():
        return ("nothing accepts connections there: the service's Redis may listen on loopback "
                "only (the embedded Redis binds 127.0.0.1), or a firewall rejects the port")
    if "Name or service not known" in text or "resolv" in text.lower():
        return "the host name does not resolve from this host"
    return "the service's Redis cannot be reached from this host"


def check(info: dict, run_dir: Path, timeout: float) -> None:
    """PING the Redis of ``info`` (with its credentials, over TLS for
    ``rediss://``) within ``timeout`` seconds, once, or raise
    :class:`RedisUnreachable` naming host:port and the likely cause."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    url = info["redis_url"]
    r = connect(info, run_dir, socket_connect_timeout=timeout, socket_timeout=timeout,
                retry=Retry(NoBackoff(), 0), health_check_interval=0)
    try:
        r.ping()
    except (redis.RedisError, OSError) as e:
        cause = likely_cause(url, e.__context__ if isinstance(e.__context__, ssl.SSLError) else e)
        raise RedisUnreachable(
            f"the endpoint's Redis at {where(url)} (as handed out by the service) did not "
            f"answer within {timeout:g}s: {cause} ({type(e).__name__})") from None
    finally:
        r.close()


def read_tasks(r: redis.Redis, stream: str, group: str, consumer: str, read: Any,
               cancelled_key: str, scard: bool) -> tuple[Any, bool | None]:
    """XREADGROUP for ``read`` (an :class:`endpoint.agent_state.Read`) and, with
    ``scard``, in the same round trip (a pipeline, not a transaction: the SCARD
    runs once the read returns) whether the endpoint's cancelled set is empty:
    if so, no task read can be cancelled and the take asks nothing about them.
    The entries, and True / False, or None for a refused SCARD (a service whose
    grant predates it: ask per id).  A failed read raises as XREADGROUP does."""
    p = r.pipeline(transaction=False)
    p.xreadgroup(group, consumer, {stream: read.cursor}, count=read.count, block=read.block_ms)
    if scard:
        p.scard(cancelled_key)
    res, *size = p.execute(raise_on_error=False)
    if isinstance(res, Exception):
        raise res
    if size and isinstance(size[0], Exception):
        log.debug("SCARD refused on %s; the reader asks per task id", cancelled_key)
        return res, None
    return res, bool(size) and size[0] == 0
