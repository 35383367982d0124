"""Whether a failed task runs again, and the record of its attempts: pure
decisions of the interchange (no sockets, no clock), tested in
tests/test_interchange_retries.py.

Retries happen on the endpoint: the interchange, which still holds the task
(payload and all), queues it again instead of passing its failure on, so the
service records one outcome per task, exactly, and no round trip is spent.
Two budgets, counted apart:

* **system failures** (``WorkerLost``, ``ManagerLost``: the task may not be at
  fault) — up to the endpoint's ``max_retries_on_system_failure``
  (``Task.attempt``);
* **the submitter's policy** (``Task.retry_policy``: ``retries`` and
  ``retry_on``) — failures of the function itself whose exception class, or a
  base of it, is named in ``retry_on`` (any, when empty), up to ``retries``
  (``Task.retried``).  Exceptions are matched by the class names the worker
  reports (``details.error_types``), never by unpickling anything.

``SerializationError`` and ``MaxResultSizeExceeded`` are never retried: the
same input fails the same way.  Every attempt that failed is recorded in
``Task.attempts`` (bounded) and the final result carries them all in
``details.attempts``.
"""
from __future__ import annotations

from typing import Any, Literal

from funcx.protocol.messages import Result, Task
from funcx.protocol.retry import (
    MAX_ATTEMPT_MESSAGE,
    MAX_ATTEMPTS_RECORDED,
    MAX_ERROR_TYPES,
    NEVER_RETRIED,
    SYSTEM_FAILURES,
    matches,
)

Why = Literal["system", "policy"]


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def failure_types(result: Result) -> list[str]:
    """The exception class names of a failed result, most specific first: what
    the worker reported (``details.error_types``), else the name its traceback
    text ends with (an older worker's result).  Bounded; never raises."""
    reported = result.details.get("error_types") if isinstance(result.details, dict) else None
    if isinstance(reported, list):
        names = [t for t in reported[:MAX_ERROR_TYPES] if isinstance(t, str) and 0 < len(t) <= 200]
        if names:
            return names
    last = next((ln for ln in reversed(result.data.splitlines()) if ln.strip()), "")
    head = last.split(":", 1)[0].strip()
    return [head] if head and " " not in head and len(head) <= 200 else []


def decide(task: Task, result: Result, max_system_retries: int) -> Why | None:
    """Why ``task`` runs again after ``result``, or None: its failure is final."""
    if result.status != "failed":
        return None
    types = failure_types(result)
    if not types:
        return None
    first = _short(types[0])
    if first in SYSTEM_FAILURES:
        return "system" if task.attempt < max_system_retries else None
    if first in NEVER_RETRIED:
        return None
    policy = task.retry_policy or {}
    budget = policy.get("retries", 0)
    if not isinstance(budget, int) or task.retried >= budget:
        return None
    retry_on = policy.get("retry_on") or []
    if retry_on and not matches(retry_on, types):
        return None
    return "policy"


def _message(result: Result) -> str:
    last = next((ln for ln in reversed(result.data.splitlines()) if ln.strip()), "")
    return last[:MAX_ATTEMPT_MESSAGE]


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out and abs(out) < 1e12 else None


def attempt_record(task: Task, result: Result | None, manager: str, *,
                   error_type: str = "", message: str = "",
                   end: float | None = None) -> dict[str, Any]:
    """One attempt as the task record shows it: ``n`` (1, 2, ...), ``status``,
    ``error_type`` and ``message`` (failures), ``manager``, ``start``, ``end``."""
    n = (task.attempts[-1]["n"] if task.attempts else 0) + 1
    rec: dict[str, Any] = {"n": n, "manager": manager[:256]}
    if result is not None:
        details = result.details if isinstance(result.details, dict) else {}
        rec["status"] = result.status
        if result.status == "failed":
            types = failure_types(result)
            rec["error_type"] = _short(types[0]) if types else "?"
            rec["message"] = _message(result)
        rec["start"] = _number(details.get("exec_start"))
        rec["end"] = _number(details.get("exec_end")) or _number(result.completion_t)
    else:
        rec.update(status="failed", error_type=error_type,
                   message=message[:MAX_ATTEMPT_MESSAGE], start=None, end=end)
    return rec


def record(task: Task, rec: dict[str, Any]) -> None:
    """Add ``rec`` to ``task.attempts``, keeping the latest MAX_ATTEMPTS_RECORDED."""
    task.attempts.append(rec)
    if len(task.attempts) > MAX_ATTEMPTS_RECORDED:
        del task.attempts[0]


def note_retry(task: Task, result: Result, why: Why, manager: str) -> None:
    """``task`` failed with ``result`` and runs again: count it against its
    budget and record the attempt."""
    record(task, attempt_record(task, result, manager))
    task.rerun += 1  # a new run, not a resend (the manager's dedup: endpoint.manager)
    if why == "system":
        task.attempt += 1
    else:
        task.retried += 1


def finish(task: Task, result: Result, manager: str) -> None:
    """The final ``result`` of ``task``: when it ran more than once or had a
    policy, its details carry every attempt (this one last)."""
    if not task.attempts and not task.retry_policy:
        return
    record(task, attempt_record(task, result, manager))
    result.details = {**(result.details or {}), "attempts": list(task.attempts)}
