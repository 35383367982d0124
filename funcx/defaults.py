"""Every tunable of funcX, with its one default, overridable by ``FUNCX_<NAME>``.

Read a value with :func:`setting`; the environment variable wins over the
default and is cast to the default's type.  Nothing else in the code base
hard-codes these numbers.
"""
from __future__ import annotations

import os
from pathlib import Path

from funcx.version import MIN_EP_VERSION, MIN_SDK_VERSION

DEFAULTS: dict[str, object] = {
    # where state lives
    "HOME": "~/.funcx",
    # the service
    "SERVICE_HOST": "127.0.0.1",
    "SERVICE_PORT": 5000,
    "WEB_WORKERS": 2,
    "WEB_THREADS": 16,
    "RQ_WORKERS": 1,
    "MAX_PAYLOAD_BYTES": 10 * 1024 * 1024,  # one submit request body / one task payload
    "MAX_RESULT_BYTES": 10 * 1024 * 1024,  # one serialized result
    "TASK_TTL_S": 14 * 24 * 3600,  # task records expire after two weeks
    "RESULT_RETENTION_S": 24 * 3600,  # results are kept this long after first fetch
    "TOKEN_TTL_S": 365 * 24 * 3600,
    "LONGPOLL_MAX_S": 30.0,
    "SWEEP_PERIOD_S": 300,
    "SUBMIT_IDEMPOTENCY_S": 3600,  # a submit's answer is kept this long under its Idempotency-Key
    # fair sharing (DESIGN decision 8): one tenant cannot exhaust what others share
    "MAX_TASKS_PER_SUBMIT": 10_000,  # tasks in one submit request; the SDK splits larger batches
    "QUOTA_QUEUED_TASKS": 200_000,  # per user: tasks submitted and not yet terminal
    "QUOTA_STORED_BYTES": 1 << 30,  # per user: bytes of payloads and results held by the service
    "LONGPOLL_PER_IDENTITY": 16,  # concurrent result long-polls one identity may hold open
    # request threads of one web process that long-polls may hold at once (kept 2 or more
    # below WEB_THREADS): beyond it a long-poll answers at once, so threads stay for others
    "WEB_LONGPOLL_THREADS": 8,
    # redis
    "REDIS_URL": "",  # empty: run the embedded redis-server
    "REDIS_PUBLIC_HOST": "",  # host endpoints use to reach Redis; default: the service's
    "REDIS_APPENDFSYNC": "everysec",
    "REDIS_MAXMEMORY": "4gb",  # embedded Redis bound (noeviction: a full store refuses writes)
    # the web's Redis calls give up after this long (503): a frozen Redis never hangs a request
    "REDIS_SOCKET_TIMEOUT_S": 5.0,
    # endpoints
    "HEARTBEAT_PERIOD_S": 2.0,
    "HEARTBEAT_THRESHOLD_S": 10.0,
    "AGENT_MAX_INFLIGHT": 4000,  # tasks an agent holds (pulled, not yet finished)
    "AGENT_READ_COUNT": 1000,  # XREADGROUP COUNT
    "INTERCHANGE_ADDRESS": "127.0.0.1",
    "MANAGER_PREFETCH": 10,  # tasks a manager holds beyond one per worker (prefetch_capacity)
    "TASK_RETRIES_ON_MANAGER_LOST": 1,
    # identity: "local" (users and tokens in Redis) or "globus" (Globus Auth)
    "AUTH": "local",
    "GLOBUS_CLIENT_ID": "",
    "GLOBUS_CLIENT_SECRET": "",
    "AUTH_CACHE_S": 30.0,  # how long a Globus token introspection / group list is trusted
    "RATE_LIMIT_READ": "60000 per minute",  # per identity
    "RATE_LIMIT_WRITE": "12000 per minute",  # per identity: submit, register, ...
    "RATE_LIMIT_ENABLED": True,
    # sdk
    "SERVICE_ADDRESS": "",
    "HTTP_TIMEOUT_S": 60.0,
    # how long batch_run, wait() and the executor retry a request the service did
    # not answer (refused, reset, 502/503/504) where a retry is safe
    "HTTP_RETRY_S": 60.0,
    "BATCH_SUBMIT_SIZE": 1000,
    # the oldest SDK / endpoint the service accepts (GET /v2/version)
    "MIN_SDK_VERSION": MIN_SDK_VERSION,
    "MIN_EP_VERSION": MIN_EP_VERSION,
}


def setting(name: str):
    """The value of tunable ``name``: ``$FUNCX_<NAME>`` if set, else its default."""
    default = DEFAULTS[name]
    raw = os.environ.get(f"FUNCX_{name}")
    if raw is None or raw == "":
        return default
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


def funcx_home() -> Path:
    """``$FUNCX_HOME`` (default ``~/.funcx``), created on first use."""
    home = Path(str(setting("HOME"))).expanduser()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home
