"""Every Redis key name and consumer-group name, defined once.

Keys under ``fx:ep:{endpoint_id}:`` are the only ones an endpoint's Redis ACL
user may touch; everything else belongs to the service.
"""
from __future__ import annotations

PREFIX = "fx"

# service-owned
USERS = f"{PREFIX}:users"  # hash name -> user id


def user(uid: str) -> str:
    return f"{PREFIX}:user:{uid}"


def user_endpoints(uid: str) -> str:
    return f"{PREFIX}:user:{uid}:endpoints"


def user_functions(uid: str) -> str:
    return f"{PREFIX}:user:{uid}:functions"


def user_function_versions(uid: str) -> str:
    """Hash: function name -> the last version number issued for it (never reused)."""
    return f"{PREFIX}:user:{uid}:function_versions"


def user_function_digests(uid: str) -> str:
    """Hash: digest of a registration's content -> its function id (re-registering
    the same content answers with the same id)."""
    return f"{PREFIX}:user:{uid}:function_digests"


def token(token_hash: str) -> str:
    return f"{PREFIX}:token:{token_hash}"


def function(fid: str) -> str:
    return f"{PREFIX}:fn:{fid}"


PUBLIC_FUNCTIONS = f"{PREFIX}:functions:public"  # set of public function ids


def client(client_id: str) -> str:
    """A client-credentials pair (service account) of a user."""
    return f"{PREFIX}:client:{client_id}"


def group(gid: str) -> str:
    return f"{PREFIX}:group:{gid}"


def group_members(gid: str) -> str:
    return f"{PREFIX}:group:{gid}:members"


def group_functions(gid: str) -> str:
    """Functions shared with the group."""
    return f"{PREFIX}:group:{gid}:functions"


def user_groups(uid: str) -> str:
    return f"{PREFIX}:user:{uid}:groups"


def user_task_groups(uid: str) -> str:
    """Sorted set of the user's task groups, scored by last submit time."""
    return f"{PREFIX}:user:{uid}:taskgroups"


def user_containers(uid: str) -> str:
    return f"{PREFIX}:user:{uid}:containers"


def container(cid: str) -> str:
    return f"{PREFIX}:container:{cid}"


ENDPOINTS = f"{PREFIX}:endpoints"  # set of every registered endpoint id
INGEST_WAKE = f"{PREFIX}:ingester:wake"  # stream: "a new results stream exists"
#: sorted set of the live ingesters: consumer name -> when its membership lapses (ms)
INGEST_LIVE = f"{PREFIX}:ingester:live"


def ingest_lease(eid: str) -> str:
    """The consumer name of the one ingester applying endpoint ``eid``'s results
    (expiring; backend/store/ingest_leases.py).  Outside the endpoint's own
    ``fx:ep:{eid}:*`` namespace: its Redis user cannot touch it."""
    return f"{PREFIX}:ingester:lease:{eid}"


#: stream of refused entries: {origin, stream, entry_id, reason, t, fields (truncated JSON)}
DEAD_LETTERS = f"{PREFIX}:deadletters"


def endpoint(eid: str) -> str:
    return f"{PREFIX}:endpoint:{eid}"


def endpoint_allowed(eid: str) -> str:
    return f"{PREFIX}:endpoint:{eid}:allowed"


def task(tid: str) -> str:
    return f"{PREFIX}:task:{tid}"


def task_group(tg: str) -> str:
    return f"{PREFIX}:tg:{tg}"


def task_group_tasks(tg: str) -> str:
    return f"{PREFIX}:tg:{tg}:tasks"


def task_group_events(tg: str) -> str:
    return f"{PREFIX}:tg:{tg}:events"


def submit_request(owner: str, idempotency_key: str) -> str:
    """The task ids a submit was answered with, under the client's Idempotency-Key."""
    return f"{PREFIX}:submitted:{owner}:{idempotency_key}"


# endpoint-owned (the endpoint's ACL user may touch these and nothing else)
def ep_prefix(eid: str) -> str:
    return f"{PREFIX}:ep:{eid}:"


def endpoint_of(ep_key: str) -> str:
    """The endpoint id in a key ``fx:ep:{id}:...``."""
    return ep_key.split(":", 3)[2]


def ep_tasks(eid: str) -> str:
    return f"{PREFIX}:ep:{eid}:tasks"


def ep_results(eid: str) -> str:
    return f"{PREFIX}:ep:{eid}:results"


def ep_status(eid: str) -> str:
    return f"{PREFIX}:ep:{eid}:status"


def ep_function(eid: str, fid: str) -> str:
    return f"{PREFIX}:ep:{eid}:fn:{fid}"


def ep_container(eid: str, cid: str) -> str:
    """A container's {"type", "location"} (JSON), copied for the endpoint at submit."""
    return f"{PREFIX}:ep:{eid}:ctr:{cid}"


def ep_outstanding(eid: str) -> str:
    """Tasks submitted to the endpoint and not yet terminal (kept by the service)."""
    return f"{PREFIX}:ep:{eid}:outstanding"


def ep_cancelled(eid: str) -> str:
    """Set of task ids cancelled (queued or in flight): the agent drops them,
    killing the ones running, and removes an id when its stream entry is acknowledged;
    the service removes one when it refuses a result because the task was cancelled."""
    return f"{PREFIX}:ep:{eid}:cancelled"


def ep_seen(eid: str) -> str:
    """Hash: when the agent last sent a heartbeat (``heartbeat_t``); unlike the
    status key it outlives the agent, so an offline endpoint says since when."""
    return f"{PREFIX}:ep:{eid}:seen"


def ep_blob(eid: str, bid: str) -> str:
    """A large task input or result in binary form (funcx.serialize.binary),
    under the endpoint's prefix so its agent may read (inputs) and write
    (results) it; the ingester moves a result's to :func:`task_blob`."""
    return f"{PREFIX}:ep:{eid}:blob:{bid}"


def task_blob(tid: str) -> str:
    """A task's result in binary form, out of the endpoint's reach (the
    ingester renamed it here from :func:`ep_blob`); expires with the record."""
    return f"{PREFIX}:task:{tid}:blob"


def ep_acl_user(eid: str) -> str:
    return f"fxep-{eid}"


AGENT_GROUP = "agent"
AGENT_CONSUMER = "agent"
INGEST_GROUP = "ingester"
#: the one consumer name all ingesters shared before each process had its own;
#: a leftover of it is claimed and forgotten like any dead ingester's
INGEST_CONSUMER = "ingester"


def ingest_consumer(host: str, pid: int, started: float) -> str:
    """One ingester process's consumer name in :data:`INGEST_GROUP`: its host,
    pid and start time, so ingesters on several hosts (or a restarted one,
    even with a reused pid) never share a name."""
    return f"{host}:{pid}:{started:.2f}"


def ingest_consumer_origin(name: str) -> tuple[str, int, float] | None:
    """(host, pid, start time) of a name made by :func:`ingest_consumer`, else None."""
    try:
        host, pid, started = name.rsplit(":", 2)
        return host, int(pid), float(started)
    except ValueError:
        return None


# fair sharing (backend/store/quotas.py, backend/store/longpolls.py)
def user_queued(uid: str) -> str:
    """Sorted set of the user's non-terminal tasks: member ``"{task_id}:{payload bytes}"``,
    scored by the time its record expires.  Its size is the queued-task quota's count."""
    return f"{PREFIX}:user:{uid}:queued"


def user_queued_bytes(uid: str) -> str:
    """Bytes of payload the user's non-terminal tasks hold (sum over :func:`user_queued`)."""
    return f"{PREFIX}:user:{uid}:queued_bytes"


def longpolls(identity: str) -> str:
    """Sorted set of the identity's open long-polls: poll id scored by its deadline."""
    return f"{PREFIX}:longpolls:{identity}"
