"""Cancelling tasks in batches: ``POST /v2/tasks/cancel`` with up to
FUNCX_BATCH_STATUS_MAX ids a request, so cancelling thousands of tasks (the
executor's ``shutdown(cancel_futures=True)``, ``funcx task cancel``) costs a
few requests, never one per task (which the client's throttle of 20 requests
a 10 s window would refuse past the 20th)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from funcx.defaults import setting
from funcx.errors import api_error
from funcx.protocol import error_codes


def cancel_answers(fxc: Any, task_ids: str | Sequence[str], web: Any = None) -> dict[str, dict]:
    """Task id -> the service's answer ``{"cancelled", "status"}`` for each of
    ``task_ids`` (``status: "unknown"`` for an id that is not one of your
    tasks), in the order given, one request per FUNCX_BATCH_STATUS_MAX ids;
    sent on ``web`` (a WebClient: the executor's own, unthrottled) or the
    FuncXClient ``fxc``'s connection."""
    ids = list(dict.fromkeys([task_ids] if isinstance(task_ids, str) else task_ids))
    most = int(setting("BATCH_STATUS_MAX"))
    out: dict[str, dict] = {}
    for start in range(0, len(ids), most):
        chunk = ids[start:start + most]
        answers = fxc._call("POST", "/v2/tasks/cancel", web=web,
                            json_body={"task_ids": chunk})["results"]
        for tid in chunk:  # the service answers with normalised (lower-case) ids
            out[tid] = answers.get(tid) or answers.get(tid.lower()) or \
                {"cancelled": False, "status": "unknown"}
    return out


def cancelled_or_raise(answers: dict[str, dict]) -> dict[str, bool]:
    """Task id -> whether it was cancelled (False: it had finished); the
    others are cancelled first, then ``NotFound`` (TASK_NOT_FOUND) names any unknown id."""
    unknown = [t for t, a in answers.items() if a.get("status") == "unknown"]
    if unknown:
        others = len(answers) - len(unknown)
        raise api_error(404, error_codes.TASK_NOT_FOUND,
                        f"task {', '.join(unknown[:5])}{' …' if len(unknown) > 5 else ''} "
                        f"not found ({len(unknown)} unknown; the other {others} were handled)")
    return {t: bool(a.get("cancelled")) for t, a in answers.items()}
