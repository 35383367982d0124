"""Tasks, task groups and results.

Submit is one Lua script (``scripts.SUBMIT``, its arguments built by
backend/store/quotas.py): task records, task-group membership, the function's
code copied into the endpoint's namespace, one XADD of the whole batch to the
endpoint's task stream and the owner's quota counters, or nothing (DESIGN
decisions 3, 5 and 8).  Results are applied by backend/store/results.py
(``scripts.APPLY_RESULTS``), one call per batch, so the first terminal result
of a task of that endpoint stands (decisions 4 and 8).
"""
from __future__ import annotations

import json
import time

import redis

from backend.store import quotas, scripts
from funcx.defaults import setting
from funcx.protocol import keys
from funcx.protocol.messages import Result
from funcx.protocol.output_limits import STREAMS
from funcx.protocol.states import TERMINAL_VALUES, TaskState, is_terminal, shown_status

#: every state a task may be cancelled from: all but the terminal ones (a running
#: task's worker is killed by its endpoint, see endpoint/agent_state.py)
CANCELLABLE = tuple(s.value for s in TaskState if s.value not in TERMINAL_VALUES)


class TaskStore:
    def __init__(self, r: redis.Redis):
        self.r = r
        self._cancel = r.register_script(scripts.CANCEL)
        self._fetch = r.register_script(scripts.FETCH)
        self._submit = r.register_script(scripts.SUBMIT)

    # ------------------------------------------------------------------ submit
    def submit_batches(self, owner: str, tg: str, batches: list[quotas.Batch],
                       request_key: str | None = None) -> list[str]:
        """Queue the tasks of several endpoints in one script call: every task
        record, the task group, one stream entry per endpoint and the owner's
        quota counters, or nothing (:class:`quotas.Refused`: over a quota, the
        store full).  The task ids come back in order.

        With ``request_key`` (the client's Idempotency-Key) a repeated request
        queues nothing and gets the task ids of the first one: the answer is
        stored by the same script as the tasks."""
        return quotas.submit(self.r, self._submit, owner, tg, batches, request_key)

    # ------------------------------------------------------------------- reads
    def records(self, tids: list[str]) -> list[dict]:
        with self.r.pipeline(transaction=False) as p:
            for tid in tids:
                p.hgetall(keys.task(tid))
            return p.execute()

    def fetch(self, tids: list[str], reader: str) -> list[dict]:
        """Task records for ``reader`` to read (``{}`` where unknown); terminal
        ones of theirs start their retention clock on this first fetch."""
        out: list[dict] = []
        for start in range(0, len(tids), 1000):
            chunk = tids[start:start + 1000]
            rows = self._fetch(keys=[keys.task(t) for t in chunk],
                               args=[repr(time.time()), int(setting("RESULT_RETENTION_S")), reader])
            out += [dict(zip(r[::2], r[1::2])) for r in rows]
        return out

    def task_group_tasks(self, tg: str, last: int | None = None) -> list[str]:
        start = -last if last else 0
        return self.r.lrange(keys.task_group_tasks(tg), start, -1)

    def recent_task_groups(self, owner: str, count: int) -> list[str]:
        return self.r.zrevrange(keys.user_task_groups(owner), 0, count - 1)

    def events_last_id(self, tg: str) -> str:
        last = self.r.xrevrange(keys.task_group_events(tg), count=1)
        return last[0][0] if last else "0-0"

    def events_after(self, tg: str, after: str, timeout_ms: int, count: int = 5000) -> list:
        """Completion events of group ``tg`` after stream id ``after`` (blocks up to timeout)."""
        res = self.r.xread({keys.task_group_events(tg): after}, count=count,
                           block=timeout_ms if timeout_ms > 0 else None)
        return res[0][1] if res else []

    # ---------------------------------------------------------------- results
    def cancel(self, rec: dict) -> bool:
        """Cancel a task that has not finished (queued or running); True if it
        was cancelled, False if it had finished already."""
        tid, tg, eid = rec["task_id"], rec.get("task_group_id") or "none", rec["endpoint_id"]
        out = self._cancel(keys=[keys.task(tid), keys.task_group_events(tg), keys.ep_cancelled(eid),
                                 keys.ep_outstanding(eid)],
                           args=[tid, repr(time.time()), *CANCELLABLE])
        return out == 1

    def cancel_many(self, recs: list[dict]) -> list[bool]:
        """:meth:`cancel` for many tasks (records the caller owns) in one
        pipeline: one CANCEL script per task, one round trip; whether each
        was cancelled, in order."""
        with self.r.pipeline(transaction=False) as p:
            for rec in recs:
                tid, tg, eid = rec["task_id"], rec.get("task_group_id") or "none", rec["endpoint_id"]
                self._cancel(keys=[keys.task(tid), keys.task_group_events(tg),
                                   keys.ep_cancelled(eid), keys.ep_outstanding(eid)],
                             args=[tid, repr(time.time()), *CANCELLABLE], client=p)
            return [out == 1 for out in p.execute()]

    def fail(self, tids: list[str], reason: str, exception_text: str) -> None:
        """Terminal failure for tasks that will never run (e.g. their endpoint was deleted)."""
        from backend.store.results import ResultStore

        by_endpoint: dict[str, list[Result]] = {}
        for t, rec in zip(tids, self.records(tids)):
            if rec:
                by_endpoint.setdefault(rec.get("endpoint_id", ""), []).append(
                    Result(t, TaskState.FAILED.value, data=exception_text,
                           details={"reason": reason}))
        for eid, results in by_endpoint.items():
            ResultStore(self.r).apply(list(results), eid)


def summary(rec: dict) -> dict:
    """A task's row in listings: no result payload."""
    row = {k: rec.get(k) for k in ("task_id", "status", "function_id", "endpoint_id",
                                   "task_group_id", "created_at", "completion_t")}
    row["task_group_id"] = rec.get("client_task_group_id") or row["task_group_id"]
    return row


def document(rec: dict) -> dict:
    """The public task document (API.md) of one task record."""
    status = rec.get("status", "unknown")
    # the group id the client sent (a private alias stays inside: quotas.alias)
    doc = {"task_id": rec["task_id"], "status": status,
           "task_group_id": rec.get("client_task_group_id") or rec.get("task_group_id")}
    if status in TERMINAL_VALUES:
        doc["completion_t"] = rec.get("completion_t") or repr(time.time())
        if "result" in rec:
            doc["result"] = rec["result"]
        if "exception" in rec:
            doc["exception"] = rec["exception"]
        if "exc_data" in rec:
            doc["exception_data"] = rec["exc_data"]
        for stream in STREAMS:  # the task's captured output, when it wrote any
            if rec.get(stream):
                doc[stream] = rec[stream]
    else:
        doc["details"] = {"reason": status}
    if rec.get("details"):
        doc["details"] = json.loads(rec["details"])
        if rec.get("endpoint_id") and isinstance(doc["details"], dict):
            doc["details"].setdefault("endpoint_id", rec["endpoint_id"])
        if isinstance(doc["details"], dict) and isinstance(doc["details"].get("attempts"), list):
            doc["attempts"] = doc["details"].pop("attempts")  # each run of a retried task
    if rec.get("reason"):
        doc.setdefault("details", {})["reason"] = rec["reason"]
    if "reason" in doc.get("details", {}):
        doc["reason"] = doc["details"]["reason"]
    return doc


def as_seen_now(doc: dict, endpoint_online: bool) -> dict:
    """``doc`` (a task document or listing row) as its endpoint's liveness
    makes it (:func:`funcx.protocol.states.shown_status`): an unfinished task
    says whether its endpoint is online (``details.endpoint_status``) and,
    while it is offline, is shown waiting for it with the state it had
    reached in ``details.last_status``.  Finished tasks are left alone."""
    status = doc.get("status", "")
    if is_terminal(status) or status == "unknown":
        return doc
    details = doc.get("details")
    if not isinstance(details, dict):
        details = doc["details"] = {}
    details["endpoint_status"] = "online" if endpoint_online else "offline"
    shown = shown_status(status, endpoint_online)
    if shown != status:
        doc["status"] = details["reason"] = doc["reason"] = shown
        details["last_status"] = status
    return doc


def drop_expired_from_groups(r: redis.Redis) -> int:
    """Drop the ids of expired task records from every task-group list (so
    groups do not grow without bound); return how many were dropped."""
    dropped = 0
    for key in r.scan_iter(match=keys.task_group_tasks("*"), count=500):
        tids = r.lrange(key, 0, -1)
        with r.pipeline(transaction=False) as p:
            for tid in tids:
                p.exists(keys.task(tid))
            alive = p.execute()
        gone = [t for t, a in zip(tids, alive) if not a]
        if gone:
            with r.pipeline(transaction=False) as p:
                for tid in gone:
                    p.lrem(key, 1, tid)
                p.execute()
            dropped += len(gone)
    return dropped
