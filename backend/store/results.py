"""Applying what endpoints report (results and status updates) to task
records, with ownership checked in Redis itself (DESIGN decisions 4 and 8).

A result or status update from endpoint E applies only to a task whose record
names E as its endpoint and that is not yet terminal; the first terminal
result stands; the task's group (for the completion event) is read from the
record, never from the message.  What was refused comes back per task, so
the caller can dead-letter it without stopping.  A task's captured output
is kept in its record as ``stdout`` / ``stderr`` (only when not empty).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import redis
from redis.commands.core import Script

from backend.store import scripts
from funcx.protocol import keys
from funcx.protocol.messages import Result, StatusUpdate
from funcx.protocol.output_limits import STREAMS
from funcx.protocol.states import TERMINAL_VALUES, TaskState, may_transition

CHUNK = 500  # results per script call

REASONS = {"unknown": "no such task", "foreign": "the task belongs to another endpoint"}


def _predecessors(status: str) -> list[str]:
    return [s.value for s in TaskState if s.value != status and may_transition(s.value, status)
            and s.value not in TERMINAL_VALUES]


@dataclass
class Applied:
    """What one call applied, and the task ids it refused with their reasons;
    ``fenced``: the endpoint's lease was another ingester's, so nothing past
    that point was written (nor acknowledged)."""

    applied: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    fenced: bool = False


_SUCCESS = TaskState.SUCCESS.value


def _argv(e: Result, out: list[str]) -> None:
    """Append ``e``'s APPLY_RESULTS arguments to ``out``: task id, status,
    field count, then its record fields (output only when not empty)."""
    at = len(out)
    out += (e.task_id, e.status, "", "completion_t", e.completion_t)
    if e.status == _SUCCESS:
        out += ("result", e.data)
    else:
        out += ("exception", e.data)
        if e.exc_data:
            out += ("exc_data", e.exc_data)
    if e.details:
        out += ("details", msgspec.json.encode(e.details).decode())
    for stream in STREAMS:  # absent when the task wrote nothing there
        text = getattr(e, stream)
        if text:
            out += (stream, text)
    out[at + 2] = str((len(out) - at - 3) // 2)


class ResultStore:
    """Writes endpoint reports into task records (one script call per chunk)."""

    def __init__(self, r: redis.Redis):
        self.r = r
        self._results = r.register_script(scripts.APPLY_RESULTS)
        self._status = r.register_script(scripts.APPLY_STATUS)
        self._ack = r.register_script(scripts.ACK_RESULTS)
        self._loaded = False

    def apply(self, entries: list[Result | StatusUpdate], eid: str,
              then_ack: tuple[str, str, list] | None = None, holder: str = "") -> Applied:
        """Apply endpoint ``eid``'s results and status updates; ``then_ack`` =
        (stream, group, entry ids) are acknowledged and deleted in the same
        round trip, after the writes (a crash in between only means a
        re-apply, which first-result-wins ignores).  With ``holder`` (an
        ingester's consumer name) each script writes only while ``holder``
        holds the endpoint's lease (backend/store/ingest_leases.py)."""
        results = [e for e in entries if isinstance(e, Result)]
        updates = [e for e in entries if isinstance(e, StatusUpdate) and e.task_ids]
        lease = keys.ingest_lease(eid)
        calls: list[list[str]] = []
        # (script, keys, args) of each call, sent by EVALSHA in one pipeline
        script_calls: list[tuple[Script, list[str], list[str]]] = []
        for start in range(0, len(results), CHUNK):
            chunk = results[start:start + CHUNK]
            argv: list[str] = [eid, holder]
            for e in chunk:
                _argv(e, argv)
            script_calls.append((self._results, [keys.ep_outstanding(eid), lease,
                                                 *[keys.task(e.task_id) for e in chunk]], argv))
            calls.append([e.task_id for e in chunk])
        for u in updates:
            script_calls.append((self._status, [lease, *[keys.task(t) for t in u.task_ids]],
                                 [eid, holder, u.status, *_predecessors(u.status)]))
            calls.append(list(u.task_ids))
        if then_ack and then_ack[2]:
            stream, group, ids = then_ack
            script_calls.append((self._ack, [lease, stream], [holder, group, *ids]))
        out = self._run(script_calls)
        done = Applied()
        n_results = (len(results) + CHUNK - 1) // CHUNK
        for i, (tids, (count, refused)) in enumerate(zip(calls, out)):
            if int(count) < 0:
                done.fenced = True
                continue
            if i < n_results:
                done.applied += int(count)
            for pos, why in refused:
                why = why.decode() if isinstance(why, bytes) else why
                done.refused.append((tids[int(pos) - 1], REASONS.get(why, why)))
        if then_ack and then_ack[2] and int(out[-1]) < 0:
            done.fenced = True
        return done

    def _run(self, script_calls: list[tuple[Script, list[str], list[str]]]) -> list:
        """Every call by EVALSHA in one round trip.  (A pipeline of registered
        scripts would first ask SCRIPT EXISTS each time: a second round trip
        on every batch.)  The scripts are loaded once; after a Redis restart
        (NOSCRIPT) they are loaded again and the calls sent again, which
        changes nothing that was already written (first result wins, and
        acknowledging twice is acknowledging once)."""
        for attempt in range(2):
            if not self._loaded:
                for sc in (self._results, self._status, self._ack):
                    sc.sha = self.r.script_load(sc.script)
                self._loaded = True
            with self.r.pipeline(transaction=False) as p:
                for sc, k, a in script_calls:
                    p.evalsha(sc.sha, len(k), *k, *a)
                try:
                    return p.execute()
                except redis.exceptions.NoScriptError:
                    if attempt:
                        raise
                    self._loaded = False
        raise AssertionError("unreachable")

    def ack(self, stream: str, ids: list[str], eid: str, holder: str = "") -> bool:
        """Acknowledge and delete entries of endpoint ``eid``'s ``stream``
        (while ``holder`` holds its lease, when given); whether it was done."""
        return int(self._ack(keys=[keys.ingest_lease(eid), stream],
                             args=[holder, keys.INGEST_GROUP, *ids])) > 0
