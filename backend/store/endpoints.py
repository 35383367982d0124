"""Endpoints: metadata (service-owned), per-endpoint Redis ACL users, streams,
and liveness read from the status key the agent refreshes."""
from __future__ import annotations

import json
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from urllib.parse import parse_qs, quote, urlsplit

import redis

from funcx.defaults import setting
from funcx.protocol import keys
from funcx.protocol.hardware import screen_manager_details

# Exactly the commands the endpoint agent (endpoint/agent.py) sends, on its own
# keys only (DESIGN decision 6).  AUTH and HELLO need no grant.  No SELECT: an
# agent of a service on db 0 never switches; on another db it may select that
# one only (``+select|N``; Redis ACLs cannot otherwise confine databases).
AGENT_COMMANDS = (
    "ping",  # connection health checks
    "multi", "exec", "discard",  # its transactions (pipeline(transaction=True))
    "xreadgroup", "xack", "xdel",  # taking and acknowledging its task entries
    "xadd",  # results and status updates into its results stream
    "xlen",  # read-only, for diagnostics of its own streams
    "hset", "expire", "del",  # the heartbeat status key (and deleting it on stop)
    "mget",  # the function code and container specs the service copied for it
    # (and its tasks' input blobs, deleted with "del" once their entry is acknowledged)
    "set",  # a large result's blob, fx:ep:{eid}:blob:{task id}, before its results entry
    "smismember", "srem",  # the set of tasks cancelled (queued or in flight)
    "scard", "smembers",  # ... and checking it for tasks in flight (usually empty)
)


def acl_rules(eid: str, password: str, db: int = 0) -> list[str]:
    """ACL SETUSER rules: only the agent's commands, only ``fx:ep:{eid}:*``,
    no pub/sub channels, and no database but the service's own."""
    rules = ["reset", "on", f">{password}", f"~{keys.ep_prefix(eid)}*", "resetchannels",
             "-@all", *(f"+{c}" for c in AGENT_COMMANDS)]
    if db:
        rules.append(f"+select|{int(db)}")
    return rules


def _db_of(url: str) -> int:
    parts = urlsplit(url)
    if parts.scheme == "unix":  # unix://:pw@/path/redis.sock?db=N
        return int(parse_qs(parts.query).get("db", ["0"])[0])
    path = (parts.path or "/0").lstrip("/") or "0"
    return int(path)


def _save_acl(r: redis.Redis) -> None:
    try:
        r.execute_command("ACL", "SAVE")
    except redis.ResponseError:
        pass  # Redis without an aclfile: the agent re-registers after a Redis restart


def agent_redis_url(service_url: str, eid: str, password: str) -> str:
    """The URL the endpoint's agent connects with, its ACL user's credentials
    in it: ``FUNCX_REDIS_AGENT_URL`` (set by the supervisor: the embedded
    Redis's address for other hosts, ``rediss://`` with TLS), else the
    service's Redis URL (an external ``rediss://`` keeps its scheme and port)
    with ``FUNCX_REDIS_PUBLIC_HOST`` as host."""
    base = str(setting("REDIS_AGENT_URL"))
    parts = urlsplit(base or service_url)
    scheme = "rediss" if parts.scheme == "rediss" else "redis"
    public = str(setting("REDIS_PUBLIC_HOST")) if not base else ""
    host = public or parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or 6379
    db = _db_of(base or service_url)
    user = quote(keys.ep_acl_user(eid), safe="")
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}:{port}/{db}"


def agent_redis_ca(agent_url: str) -> str | None:
    """PEM text of the CA that signs the Redis certificate, for a ``rediss://``
    agent URL when the service has one configured (``FUNCX_REDIS_CA``, else
    ``FUNCX_TLS_CA``); None: the agent trusts its own CA bundle or the system's."""
    if not agent_url.startswith("rediss://"):
        return None
    from backend.redis_conn import redis_ca

    ca = redis_ca()
    if not ca:
        return None
    try:
        with open(ca, encoding="ascii") as f:
            return f.read()
    except OSError:
        return None


def ensure_streams(r: redis.Redis, eid: str) -> None:
    for stream, group in ((keys.ep_tasks(eid), keys.AGENT_GROUP),
                          (keys.ep_results(eid), keys.INGEST_GROUP)):
        try:
            r.xgroup_create(stream, group, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise


def register(r: redis.Redis, owner: str, service_redis_url: str, *, eid: str | None = None,
             name: str, display_name: str = "", metadata: dict | None = None,
             public: bool = False, allowed_functions: list[str] | None = None,
             limits: dict | None = None) -> dict:
    """Create or update an endpoint; rotate its Redis credentials; return what
    the agent needs to connect.  ``limits`` (already decoded by
    ``funcx.protocol.messages.endpoint_limits``) is the owner's bound on every
    task, stored as JSON in the record's ``limits`` field."""
    eid = eid or str(uuid.uuid4())
    now = repr(time.time())
    rec = {
        "uuid": eid, "name": name, "display_name": display_name or name, "owner": owner,
        "public": "1" if public else "0", "metadata": json.dumps(metadata or {}),
        "registered_at": now, "limits": json.dumps(limits or {}),
    }
    password = secrets.token_urlsafe(24)
    ensure_streams(r, eid)
    with r.pipeline() as p:
        p.hsetnx(keys.endpoint(eid), "created_at", now)
        p.hset(keys.endpoint(eid), mapping=rec)
        p.sadd(keys.ENDPOINTS, eid)
        p.sadd(keys.user_endpoints(owner), eid)
        if allowed_functions is not None:
            p.delete(keys.endpoint_allowed(eid))
            if allowed_functions:
                p.sadd(keys.endpoint_allowed(eid), *allowed_functions)
        p.xadd(keys.INGEST_WAKE, {"endpoint_id": eid}, maxlen=100, approximate=True)
        p.execute()
    r.execute_command("ACL", "SETUSER", keys.ep_acl_user(eid),
                      *acl_rules(eid, password, _db_of(service_redis_url)))
    _save_acl(r)
    url = agent_redis_url(service_redis_url, eid, password)
    ca = agent_redis_ca(url)
    return {
        "endpoint_id": eid,
        "name": name,
        "redis_url": url,
        **({"redis_ca": ca} if ca else {}),
        "task_stream": keys.ep_tasks(eid),
        "result_stream": keys.ep_results(eid),
        "status_key": keys.ep_status(eid),
        "cancelled_key": keys.ep_cancelled(eid),
        "seen_key": keys.ep_seen(eid),
        "function_key_prefix": keys.ep_function(eid, ""),
        "container_key_prefix": keys.ep_container(eid, ""),
        "agent_group": keys.AGENT_GROUP,
        "agent_consumer": keys.AGENT_CONSUMER,
        "heartbeat_period": float(setting("HEARTBEAT_PERIOD_S")),
        "heartbeat_threshold": float(setting("HEARTBEAT_THRESHOLD_S")),
    }


def get(r: redis.Redis, eid: str) -> dict | None:
    return r.hgetall(keys.endpoint(eid)) or None


def list_for(r: redis.Redis, owner: str, include_public: bool = False) -> list[dict]:
    eids = set(r.smembers(keys.user_endpoints(owner)))
    with r.pipeline(transaction=False) as p:
        for eid in sorted(eids):
            p.hgetall(keys.endpoint(eid))
        recs = [x for x in p.execute() if x]
    if include_public:
        with r.pipeline(transaction=False) as p:
            others = sorted(set(r.smembers(keys.ENDPOINTS)) - eids)
            for eid in others:
                p.hgetall(keys.endpoint(eid))
            recs += [x for x in p.execute() if x and x.get("public") == "1"]
    return recs


def public_view(rec: dict) -> dict:
    return {
        "uuid": rec["uuid"],
        "name": rec.get("name"),
        "display_name": rec.get("display_name"),
        "owner": rec.get("owner"),
        "public": rec.get("public") == "1",
        "metadata": json.loads(rec.get("metadata") or "{}"),
        "limits": json.loads(rec.get("limits") or "{}"),
        "created_at": rec.get("created_at"),
    }


def status(r: redis.Redis, eid: str) -> dict:
    """online while the agent's heartbeat key lives (it expires after the threshold)."""
    raw = r.hgetall(keys.ep_status(eid))
    details = json.loads(raw.get("details") or "{}") if raw else {}
    outstanding = max(0, int(r.get(keys.ep_outstanding(eid)) or 0))
    taken = int(details.get("outstanding_in_agent", 0)) if raw else 0
    details.setdefault("total_workers", 0)
    details.setdefault("idle_workers", 0)
    details.setdefault("managers", 0)
    details["pending_tasks"] = max(0, outstanding - taken)  # not yet taken by the agent
    details["outstanding_tasks"] = outstanding  # submitted, not yet finished
    details["heartbeat_t"] = raw.get("heartbeat_t") if raw else None
    # the agent is a tenant: its managers' hardware reports are checked again here
    screen_manager_details(details)
    return {"status": "online" if raw else "offline", "details": details}


def last_seen(r: redis.Redis, eid: str) -> float | None:
    """When the endpoint's agent last sent a heartbeat (epoch seconds), if ever.
    The agent writes it: anything but a finite number reads as never seen
    (``NaN`` or ``Infinity`` is not JSON, and other users read it)."""
    raw = r.hget(keys.ep_seen(eid), "heartbeat_t")
    try:
        seen = float(raw) if raw else None
    except ValueError:
        return None
    return seen if seen is not None and math.isfinite(seen) else None


def reported_problems(r: redis.Redis, eid: str) -> list[dict] | None:
    """The problems the endpoint's agent last reported (its heartbeat's
    ``details.problems``; malformed entries left out), or None when no agent
    heartbeat lives (the endpoint is offline)."""
    raw = r.hget(keys.ep_status(eid), "details")
    if not raw:
        return None
    try:
        problems = json.loads(raw).get("problems")
    except (ValueError, AttributeError):
        return []
    return [p for p in problems if isinstance(p, dict)] if isinstance(problems, list) else []


def allowed_functions(r: redis.Redis, eid: str) -> set[str]:
    return r.smembers(keys.endpoint_allowed(eid))


def set_allowed(r: redis.Redis, eid: str, add: Sequence[str] = (),
                remove: Sequence[str] = ()) -> set[str]:
    with r.pipeline() as p:
        if add:
            p.sadd(keys.endpoint_allowed(eid), *add)
        if remove:
            p.srem(keys.endpoint_allowed(eid), *remove)
        p.smembers(keys.endpoint_allowed(eid))
        return p.execute()[-1]


def _endpoint_keys(r: redis.Redis, eid: str) -> list[str]:
    """Every key of the endpoint: its record and ``fx:endpoint:{eid}:*``
    (service-owned), its ingest lease, and ``fx:ep:{eid}:*`` (the agent's)."""
    found = [keys.endpoint(eid), keys.endpoint_allowed(eid), keys.ingest_lease(eid)]
    for pattern in (f"{keys.endpoint(eid)}:*", f"{keys.ep_prefix(eid)}*"):
        found += r.scan_iter(match=pattern, count=1000)
    return sorted(set(found))


def _queued_tasks(entries: list) -> list[str]:
    """Task ids in task-stream entries; a malformed entry (the agent can write
    to its own stream) is skipped, never an error."""
    from funcx.protocol.messages import ProtocolError
    from funcx.protocol.streams import decode_task_entry

    out = []
    for _, fields in entries:
        try:
            out += [t.task_id for t in decode_task_entry(fields)] if fields else []
        except ProtocolError:
            continue
    return out


def delete(r: redis.Redis, eid: str, owner: str) -> list[str]:
    """Remove an endpoint and everything it had: its ACL user first (which
    also drops the agent's connections, so it writes nothing more), then in
    one transaction its record, indexes and every key of the endpoint.
    Return the ids of tasks it still had queued, which the caller fails."""
    try:
        r.execute_command("ACL", "DELUSER", keys.ep_acl_user(eid))
        _save_acl(r)
    except redis.ResponseError:
        pass
    stream = keys.ep_tasks(eid)
    with r.pipeline() as p:
        while True:  # a submit that lands meanwhile is read again, not lost
            try:
                p.watch(stream)
                queued = _queued_tasks(p.xrange(stream))
                doomed = _endpoint_keys(p, eid)
                p.multi()
                p.delete(*doomed)
                p.srem(keys.ENDPOINTS, eid)
                p.srem(keys.user_endpoints(owner), eid)
                p.execute()
                break
            except redis.WatchError:
                continue
    return [t for t in queued if t]


def forget_outstanding(r: redis.Redis, eid: str) -> None:
    """Drop the outstanding counter that failing a deleted endpoint's queued
    tasks wrote again, so nothing of the endpoint is left behind."""
    r.delete(keys.ep_outstanding(eid))


def submit_view(r: redis.Redis, eid: str, fids: list[str]) -> tuple[dict | None, set[str],
                                                                    list[dict | None]]:
    """Everything a submit checks, in one round trip: the endpoint's record, its
    allowed functions, and each function's record (None where missing)."""
    with r.pipeline(transaction=False) as p:
        p.hgetall(keys.endpoint(eid))
        p.smembers(keys.endpoint_allowed(eid))
        for fid in fids:
            p.hgetall(keys.function(fid))
        ep, allowed, *fns = p.execute()
    return ep or None, allowed, [f or None for f in fns]
