"""Per-user quotas, kept exactly in Redis, and the submit script that enforces them.

Two quotas per user (DESIGN decision 8), each refused whole with 429:

* ``QUOTA_QUEUED_TASKS`` — tasks submitted and not yet terminal.  Counted as the
  size of :func:`funcx.protocol.keys.user_queued`, a sorted set whose members are
  ``"{task_id}:{payload bytes}"`` scored by the time the task's record expires.
* ``QUOTA_STORED_BYTES`` — bytes of argument payloads those tasks hold in the
  endpoints' task streams: :func:`funcx.protocol.keys.user_queued_bytes`.

Results do not count against the stored-bytes quota: a result is bounded by
``MAX_RESULT_BYTES``, it lives for ``RESULT_RETENTION_S`` after its first fetch
(``TASK_TTL_S`` at most) and it leaves Redis by key expiry, which runs no code, so
an exact per-user counter of result bytes would need a sweep of its own; what
bounds results overall is Redis ``maxmemory`` (a full store answers 507).

Both counters go up in the one script that queues a submit (:data:`SUBMIT`), so a
submit is queued whole or refused whole and nothing that queued can fail after;
they go down when a task becomes terminal, once (in the result-apply script,
and by ``scripts.RELEASE`` in the cancel script); a task that expires without
ever finishing drops out when its score passes (trimmed by the next submit of
its owner).
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field

import msgspec
import redis

from backend.store import scripts
from funcx.defaults import setting
from funcx.protocol import error_codes, keys
from funcx.protocol.messages import Task
from funcx.protocol.states import TaskState
from funcx.protocol.streams import encode_task_batch

SUBMIT = scripts.SUBMIT  # see backend/store/scripts.py
_json = msgspec.json.Encoder()

#: a uuid5 namespace for the private alias of a task-group id another user holds
_ALIAS_NS = uuid.UUID("5b0c6f0e-8f3e-4c55-9a51-0f1d2c3b4a59")


class Refused(Exception):
    """A submit refused whole, nothing written: ``code`` is an error_codes constant."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class GroupTaken(Exception):
    """The task-group id chosen for the submit was claimed by another user meanwhile."""


@dataclass
class Batch:
    """One endpoint's share of a submit, validated."""

    eid: str
    items: list[tuple[str, str]]  # (function id, payload)
    codes: dict[str, str]  # function id -> function code
    containers: dict[str, str] = field(default_factory=dict)  # function id -> container id
    resource_specification: dict | None = None
    container_specs: dict[str, str] = field(default_factory=dict)  # container id -> JSON
    result_serializers: list[str] = field(default_factory=list)  # import paths, in order
    retry_policy: dict = field(default_factory=dict)  #: funcx.protocol.retry ({}: no retries)
    #: the submitter ({"id", "username"}) for a multi-user endpoint (issue 19), from the token
    identity: dict = field(default_factory=dict)
    user_endpoint_config: dict = field(default_factory=dict)  #: checked against its schema
    #: bytes each task's input blobs hold (a binary submit's frames), in items'
    #: order; counted with the payloads for the stored-bytes quota ([]: none)
    extra_bytes: list[int] = field(default_factory=list)


def new_task_ids(n: int) -> list[str]:
    """``n`` random (version 4) UUIDs as text, as ``str(uuid.uuid4())`` makes
    them, from one read of the system's random source (a third of the CPU)."""
    h = os.urandom(16 * n).hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-"
            f"{'89ab'[int(h[i + 16], 16) & 3]}{h[i + 17:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * n, 32)]


def utf8_len(text: str) -> int:
    """Bytes ``text`` takes in UTF-8, without encoding it when it is ASCII
    (as serialized payloads are: ``str.isascii`` is a flag test)."""
    return len(text) if text.isascii() else len(text.encode())


def alias(owner: str, tg: str) -> str:
    """The caller's private group for a task-group id that another user holds."""
    return str(uuid.uuid5(_ALIAS_NS, f"{owner}/{tg}"))


def resolve_task_group(r: redis.Redis, tg: str, user: str) -> str | None:
    """The group ``user`` means by id ``tg`` (``tg`` itself or their private
    alias of it), or None if they have none by that id — the same answer
    whether or not another user holds ``tg``."""
    with r.pipeline(transaction=False) as p:
        p.hget(keys.task_group(tg), "owner")
        p.hget(keys.task_group(alias(user, tg)), "owner")
        mine, aliased = p.execute()
    if mine == user:
        return tg
    if aliased == user:
        return alias(user, tg)
    return None


def usage(r: redis.Redis, uid: str) -> tuple[int, int]:
    """(queued tasks, queued payload bytes) the user's quotas count now."""
    with r.pipeline(transaction=False) as p:
        p.zcount(keys.user_queued(uid), time.time(), "+inf")
        p.get(keys.user_queued_bytes(uid))
        n, b = p.execute()
    return int(n), int(b or 0)


def submit(r: redis.Redis, script, owner: str, client_tg: str, batches: list[Batch],
           request_key: str | None = None) -> list[str]:
    """Queue every batch in one script call and return the new task ids, in
    order; or the first answer's ids under a reused ``request_key``.  Raises
    :class:`Refused` (quota, full store), nothing written."""
    replay = bool(request_key and r.exists(keys.submit_request(owner, request_key)))
    # one round trip: the quotas' counts and the group's owner
    with r.pipeline(transaction=False) as p:
        p.zcount(keys.user_queued(owner), time.time(), "+inf")
        p.get(keys.user_queued_bytes(owner))
        p.hget(keys.task_group(client_tg), "owner")
        queued, held, owner_now = p.execute()
    if not replay:  # (a replayed request is answered, never refused)
        _precheck(batches, int(queued), int(held or 0))
    for attempt in range(2):
        # a task-group id someone else holds is not refused (that would tell the
        # caller it exists): the caller gets a private group under the same id
        tg = client_tg
        if attempt:
            owner_now = r.hget(keys.task_group(client_tg), "owner")
        if owner_now is not None and owner_now != owner:
            tg = alias(owner, client_tg)
        try:
            return _run(script, owner, tg, client_tg, batches, request_key)
        except GroupTaken:
            if tg != client_tg or attempt:  # the alias itself is held: only by design
                raise Refused(error_codes.TASK_GROUP_NOT_FOUND,
                              f"task group {client_tg} not found") from None
    raise AssertionError("unreachable")


def _precheck(batches: list[Batch], queued: int, held: int) -> None:
    """Refuse a submit that is plainly over a quota (``queued`` tasks and
    ``held`` bytes counted now) before building it (a tenant at its quota
    retrying big submits costs one round trip each); the script checks again,
    atomically, whatever passes here."""
    n = sum(len(b.items) for b in batches)
    if queued + n > int(setting("QUOTA_QUEUED_TASKS")):
        raise _refusal(error_codes.QUOTA_QUEUED_TASKS, n, 0, str(queued))
    nbytes = sum(utf8_len(p) for b in batches for _, p in b.items) \
        + sum(sum(b.extra_bytes) for b in batches)
    if held + nbytes > int(setting("QUOTA_STORED_BYTES")):
        raise _refusal(error_codes.QUOTA_STORED_BYTES, n, nbytes, str(held))


def _refusal(code: str, n: int, nbytes: int, detail: str) -> Refused:
    if code == error_codes.QUOTA_QUEUED_TASKS:
        quota = int(setting("QUOTA_QUEUED_TASKS"))
        return Refused(code, f"this submit of {n} task(s) would exceed your quota of "
                             f"{quota} queued tasks ({detail} not finished yet): wait for some "
                             "to finish (or cancel them), then submit again")
    quota = int(setting("QUOTA_STORED_BYTES"))
    return Refused(code, f"this submit's {nbytes} bytes of arguments would exceed your quota "
                         f"of {quota} bytes held by queued tasks ({detail} held now): wait for "
                         "some tasks to finish, or pass large data by reference (a path or "
                         "URL) instead of as arguments")


def _run(script, owner: str, tg: str, client_tg: str, batches: list[Batch],
         request_key: str | None) -> list[str]:
    now = time.time()
    ttl = int(setting("TASK_TTL_S"))
    argv: list[str] = []

    def slot(value: str) -> int:  # the ARGV index (Lua, 1-based, after the header)
        argv.append(value)
        return len(argv) + 1

    codes, containers, out_batches, tids, nbytes = [], [], [], [], 0
    for b in batches:
        for fid, code in b.codes.items():
            codes.append([keys.ep_function(b.eid, fid), slot(code)])
        for cid, spec in b.container_specs.items():
            containers.append([keys.ep_container(b.eid, cid), slot(spec)])
        fids = list(dict.fromkeys(fid for fid, _ in b.items))
        index = {fid: i + 1 for i, fid in enumerate(fids)}
        rows, tasks = [], []
        extra = b.extra_bytes or [0] * len(b.items)
        for (fid, payload), tid, more in zip(b.items, new_task_ids(len(b.items)), extra):
            size = utf8_len(payload) + more
            nbytes += size
            tids.append(tid)
            rows.append([tid, index[fid], size])
            tasks.append(Task(tid, fid, payload, tg, container_id=b.containers.get(fid, ""),
                              resource_specification=b.resource_specification or {},
                              result_serializers=b.result_serializers,
                              retry_policy=b.retry_policy, identity=b.identity,
                              user_endpoint_config=b.user_endpoint_config))
        entry = encode_task_batch(tasks) if tasks else {}
        start = len(argv) + 2
        for k, v in entry.items():
            argv.extend((k, v))
        if rows:
            out_batches.append({"eid": b.eid, "ep_key": keys.endpoint(b.eid), "fids": fids,
                                "tasks": rows,
                                "stream": keys.ep_tasks(b.eid),
                                "outstanding": keys.ep_outstanding(b.eid),
                                "entry": start, "nf": len(entry)})
    answer_ttl = int(setting("SUBMIT_IDEMPOTENCY_S")) if request_key else 0
    header = {
        "owner": owner, "tg": tg, "client_tg": client_tg, "now": now, "now_s": repr(now),
        "ttl": ttl, "n": len(tids), "nbytes": nbytes,
        "max_tasks": int(setting("QUOTA_QUEUED_TASKS")),
        "max_bytes": int(setting("QUOTA_STORED_BYTES")),
        "status": TaskState.WAITING_FOR_EP.value, "task_prefix": keys.task(""),
        "tg_key": keys.task_group(tg), "tg_tasks_key": keys.task_group_tasks(tg),
        "tg_events_key": keys.task_group_events(tg),
        "user_tgs_key": keys.user_task_groups(owner),
        "codes": codes, "containers": containers, "batches": out_batches,
        "answer_ttl": answer_ttl, "answer": _json.encode(tids).decode() if answer_ttl else "",
    }
    answer_key = keys.submit_request(owner, request_key or "-")
    out = script(keys=[keys.user_queued(owner), keys.user_queued_bytes(owner), answer_key],
                 args=[_json.encode(header), *argv])
    status = int(out[0])
    if status == 1:
        return tids
    if status == 2:
        return json.loads(out[1])
    code, detail = _text(out[1]), _text(out[2])
    if code == scripts.GROUP_TAKEN:
        raise GroupTaken()
    if code in (error_codes.QUOTA_QUEUED_TASKS, error_codes.QUOTA_STORED_BYTES):
        raise _refusal(code, len(tids), nbytes, detail)
    if code == error_codes.STORE_FULL:
        raise redis.exceptions.OutOfMemoryError(detail)
    if code == error_codes.ENDPOINT_NOT_FOUND:
        raise Refused(code, f"endpoint {detail} not found")
    raise redis.exceptions.ResponseError(f"submit script answered {code}: {detail}")


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
