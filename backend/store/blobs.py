"""Large task inputs and results held in Redis as bytes (the binary path,
issue 20; funcx.serialize.binary).

* Inputs: each frame of a binary submit body is a Redis string
  :func:`keys.ep_blob` ``(endpoint, blob id)``, written just before the
  submit script queues the tasks that reference it (and deleted again if it
  refuses them); the endpoint's agent reads it and deletes it when the task
  entry is acknowledged.  It expires with the task records (``TASK_TTL_S``).
* Results: an endpoint writes a large result as ``ep_blob(endpoint, task id)``
  and reports ``data = "bb\\n<task id>"``.  :func:`settle` (the ingester)
  checks the task is that endpoint's and still open, then RENAMEs the blob to
  :func:`keys.task_blob` (O(1), out of the endpoint's reach), gives it the
  record's expiry, and the record's result becomes ``bb\\n<size>``.  A
  reference to a blob the endpoint did not write makes that task fail with
  ``RESULT_BLOB_MISSING``; the other results of the entry are unaffected.
* Reading: :func:`follow_record` gives a result blob the record's (possibly
  shortened, on first fetch) expiry; :func:`result_bytes` reads it.
"""
from __future__ import annotations

from collections.abc import Sequence

import redis

from backend.store import scripts
from funcx.errors import MaxResultSizeExceeded, SerializationError
from funcx.protocol import error_codes, keys
from funcx.protocol.messages import Result, StatusUpdate
from funcx.protocol.states import TaskState
from funcx.serialize import binary

#: socket reads of a blob connection (hiredis reads into one buffer this big)
BLOB_READ_BYTES = 1024 * 1024


def blob_client(r: redis.Redis) -> redis.Redis:
    """A client to ``r``'s server (same credentials and transport) for blobs:
    replies are bytes, large values are sent without being copied (redis-py's
    Python command packer passes a memoryview on as it is; hiredis's packer
    copies every value, ~1 ms per MiB) and read in 1 MiB socket reads."""
    from redis.connection import PythonRespSerializer
    from redis.utils import HIREDIS_AVAILABLE

    pool = r.connection_pool
    kw = {**pool.connection_kwargs, "decode_responses": False,
          "socket_read_size": BLOB_READ_BYTES}
    encoder = redis.connection.Encoder(kw.get("encoding", "utf-8"),
                                       kw.get("encoding_errors", "strict"), False)
    if HIREDIS_AVAILABLE:
        kw["command_packer"] = PythonRespSerializer(6000, encoder.encode)
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kw))


# --------------------------------------------------------------------- inputs


def store_inputs(r: redis.Redis, eid: str, blobs: Sequence[tuple[str, bytes | memoryview]],
                 ttl_s: int) -> None:
    """Write each ``(blob id, bytes)`` as ``ep_blob(eid, id)`` expiring in
    ``ttl_s`` (one round trip; the bytes are not copied on the way)."""
    if not blobs:
        return
    with r.pipeline(transaction=False) as p:
        for bid, data in blobs:
            p.set(keys.ep_blob(eid, bid), data, ex=ttl_s)
        p.execute()


def answered(r: redis.Redis, user: str, request_key: str | None) -> bool:
    """Whether ``user``'s submit under Idempotency-Key ``request_key`` was
    answered already (a replay stores no blobs)."""
    return bool(request_key) and bool(r.exists(keys.submit_request(user, request_key or "")))


def drop_inputs(r: redis.Redis, eid: str, bids: Sequence[str]) -> None:
    """Delete input blobs a refused submit had written."""
    if bids:
        r.delete(*(keys.ep_blob(eid, b) for b in bids))


# -------------------------------------------------------------------- results
def _failed(e: Result, text: str, reason: str) -> Result:
    return Result(e.task_id, TaskState.FAILED.value, data=text, completion_t=e.completion_t,
                  details={"reason": reason}, stdout=e.stdout, stderr=e.stderr)


def missing_text(tid: str, what: str) -> str:
    """The failure text of a result whose blob is not there."""
    return (f"{error_codes.RESULT_BLOB_MISSING}: the result of task {tid} {what}; the task "
            "is failed (run it again)")


def settle(r: redis.Redis, eid: str, entries: list[Result | StatusUpdate],
           max_result: int) -> list[Result | StatusUpdate]:
    """``entries`` (endpoint ``eid``'s, decoded) with every blob result moved
    out of the endpoint's reach and its ``data`` made ``bb\\n<size>``; a
    reference the endpoint cannot back becomes a RESULT_BLOB_MISSING
    failure, a blob over ``max_result`` a MaxResultSizeExceeded one."""
    todo = [i for i, e in enumerate(entries) if isinstance(e, Result)
            and e.status == TaskState.SUCCESS.value and binary.is_ref(e.data)]
    if not todo:
        return entries
    out = list(entries)
    calls: list[int] = []
    script = r.register_script(scripts.SETTLE_BLOB)
    with r.pipeline(transaction=False) as p:
        for i in todo:
            e = out[i]
            assert isinstance(e, Result)
            try:
                name = binary.ref_name(e.data)
            except SerializationError:
                name = ""
            if name != e.task_id:  # only its own task's blob, under the endpoint's prefix
                out[i] = _failed(e, missing_text(e.task_id, "named a blob other than its own"),
                                 "result blob missing")
                continue
            script(keys=[keys.task(e.task_id), keys.ep_blob(eid, e.task_id),
                         keys.task_blob(e.task_id)],
                   args=[eid, max_result], client=p)
            calls.append(i)
        answers = p.execute() if calls else []
    for i, (verdict, n) in zip(calls, answers):
        e = out[i]
        assert isinstance(e, Result)
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        if verdict == "ok":
            e.data = binary.ref(str(max(0, int(n) - 3)))
        elif verdict == "missing":
            out[i] = _failed(e, missing_text(e.task_id, "named a blob its endpoint had not "
                                             "written"), "result blob missing")
        elif verdict == "large":
            err = MaxResultSizeExceeded(int(n) - 3, max_result)
            out[i] = _failed(e, f"{type(err).__name__}: {err}", "result too large")
    return out


def follow_record(raw: redis.Redis, tids: Sequence[str]) -> list[bool]:
    """Give each task's result blob its record's expiry; whether each exists."""
    script = raw.register_script(scripts.FOLLOW_BLOB)
    with raw.pipeline(transaction=False) as p:
        for tid in tids:
            script(keys=[keys.task(tid), keys.task_blob(tid)], client=p)
        return [bool(x) for x in p.execute()]


def result_bytes(raw: redis.Redis, tids: Sequence[str]) -> list[bytes | None]:
    """Each task's result blob (the binary item), after :func:`follow_record`;
    None where it is gone.  ``raw`` answers bytes."""
    script = raw.register_script(scripts.FOLLOW_BLOB)
    with raw.pipeline(transaction=False) as p:
        for tid in tids:
            script(keys=[keys.task(tid), keys.task_blob(tid)], client=p)
            p.get(keys.task_blob(tid))
        out = p.execute()
    return [v if isinstance(v, bytes) else None for v in out[1::2]]
