"""Turning task documents into results or the remote exception."""
from __future__ import annotations

from typing import Any

from funcx.errors import TaskExecutionFailed
from funcx.protocol.states import TERMINAL_VALUES
from funcx.serialize import FuncXSerializer


def rebuild_exception(doc: dict, serializer: FuncXSerializer) -> BaseException:
    """The function's own exception where it can be rebuilt, with the remote
    traceback attached; else ``TaskExecutionFailed`` carrying the text."""
    text = doc.get("exception") or doc.get("reason") or "task failed"
    completion_t = doc.get("completion_t")
    data = doc.get("exception_data")
    if data:
        try:
            exc = serializer.deserialize(data)
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            exc.add_note(f"\n--- remote traceback (task {doc.get('task_id')}) ---\n{text.rstrip()}")
            try:
                exc.remote_traceback = text
                exc.completion_t = completion_t
            except AttributeError:
                pass
            return exc
    return TaskExecutionFailed(text, completion_t)


def task_status(doc: dict, serializer: FuncXSerializer) -> dict[str, Any]:
    """``{"pending", "status", "result" | "exception", "completion_t"}`` of one task."""
    from funcx.sdk.reprs import TaskRecord

    status = str(doc.get("status", "unknown")).lower()
    out: dict[str, Any] = TaskRecord(task_id=doc.get("task_id"),
                                     pending=status not in TERMINAL_VALUES, status=status)
    if not out["pending"]:
        out["completion_t"] = doc.get("completion_t")
        if status == "success" and "result" in doc:
            out["result"] = serializer.deserialize(doc["result"])
        else:
            out["exception"] = rebuild_exception(doc, serializer)
    else:
        out["reason"] = doc.get("reason") or (doc.get("details") or {}).get("reason") or status
    return out
