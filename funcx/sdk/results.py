"""Turning task documents into results or the remote exception."""
from __future__ import annotations

from typing import Any

from funcx.errors import SerializationError, TaskExecutionFailed
from funcx.protocol.output_limits import STREAMS
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
        except Exception:  # noqa: BLE001 - any failure: fall back to the text
            exc = None
        if isinstance(exc, BaseException):
            try:
                exc.remote_traceback = text  # type: ignore[attr-defined]
                exc.completion_t = completion_t  # type: ignore[attr-defined]
            except AttributeError:
                pass
            return with_display(attach_output(exc, doc), doc, text)
    failed = with_display(attach_output(TaskExecutionFailed(text, completion_t), doc), doc, None)
    note = output_note(failed)
    if note and hasattr(failed, "add_note"):  # its message is the traceback: the
        failed.add_note(note)  # note adds only what it printed (Python 3.11+)
    elif note:
        failed.__notes__ = [note]  # type: ignore[attr-defined]
    return failed


def output_note(exc: BaseException) -> str:
    """What the task printed, the last lines of each stream (bounded:
    :func:`funcx.sdk.render.output_lines`), for a traceback's note; "" when it
    printed nothing."""
    from funcx.sdk.render import output_lines

    lines = output_lines(exc)
    return "\n".join(["", *lines]) if lines else ""


def task_output(doc: dict) -> dict[str, str]:
    """``{"stdout", "stderr"}``: what the task wrote to each ("" when nothing;
    a cut is marked inside the text)."""
    return {s: v if isinstance(v := doc.get(s), str) else "" for s in STREAMS}


def attach_output(exc: BaseException, doc: dict) -> BaseException:
    """``exc`` with the task's output as ``.stdout`` / ``.stderr`` (an exception
    type that takes no attributes is returned as it is)."""
    for stream, text in task_output(doc).items():
        try:
            setattr(exc, stream, text)
        except AttributeError:
            pass
    return exc


def with_display(exc: BaseException, doc: dict, note_text: str | None) -> BaseException:
    """A task's exception that shows its remote traceback once, with source
    lines (funcx.sdk.render): in IPython instead of the local frames, in a
    script as a note after them.  Set captured output (``.stdout``,
    ``.stderr``) on ``exc`` before this: the note is made here."""
    from funcx.sdk.render import attach_display, remote_note

    attach_display(exc, doc.get("task_id"))
    if note_text is not None:  # TaskExecutionFailed's own message is the traceback
        note = remote_note(exc)
        if hasattr(exc, "add_note"):  # Python 3.11+
            exc.add_note(note)
        else:  # 3.10: the remote traceback still rides along on remote_traceback
            exc.__notes__ = [note]  # type: ignore[attr-defined]
    return exc


def with_attempts(exc: BaseException, doc: dict) -> BaseException:
    """A retried task's exception with its runs as ``.attempts`` and, when it
    ran more than once, a note saying how each earlier run ended (the raised
    error is the last run's; README "Retries")."""
    attempts = doc.get("attempts")
    if not isinstance(attempts, list) or not attempts:
        return exc
    try:
        exc.attempts = attempts  # type: ignore[attr-defined]
    except AttributeError:
        pass
    earlier = [a for a in attempts[:-1] if isinstance(a, dict)]
    if earlier and hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(f"this task ran {attempts[-1].get('n', len(attempts))} times; earlier "
                     "runs ended with:\n" + "\n".join(
                         f"  attempt {a.get('n')}: {a.get('message') or a.get('error_type')}"
                         for a in earlier[-5:]))
    return exc


def version_hint(details: dict) -> str:
    """Where the endpoint's Python or dill differ from this side's, say so."""
    import platform

    import dill

    theirs = {"Python": details.get("python_version"), "dill": details.get("dill_version")}
    ours = {"Python": platform.python_version(), "dill": dill.__version__}
    diff = [f"{k} {theirs[k]} on the endpoint but {ours[k]} here" for k in theirs
            if theirs[k] and theirs[k] != ours[k]]
    return f"; note: {', '.join(diff)}: use the same versions on both sides" if diff else ""


def task_status(doc: dict, serializer: FuncXSerializer) -> dict[str, Any]:
    """``{"pending", "status", "result" | "exception", "completion_t", "stdout",
    "stderr"}`` of one task (the last three once it finished)."""
    from funcx.sdk.reprs import TaskRecord

    status = str(doc.get("status", "unknown")).lower()
    out: dict[str, Any] = TaskRecord(task_id=doc.get("task_id"),
                                     pending=status not in TERMINAL_VALUES, status=status)
    if not out["pending"]:
        out["completion_t"] = doc.get("completion_t")
        out.update(task_output(doc))
        if isinstance(doc.get("attempts"), list):  # a retried task's runs (README "Retries")
            out["attempts"] = doc["attempts"]
        if status == "success" and "result" in doc:
            try:
                out["result"] = serializer.deserialize(doc["result"])
            except SerializationError as e:
                raise SerializationError(f"{e}{version_hint(doc.get('details') or {})}") from e
        else:
            out["exception"] = with_attempts(rebuild_exception(doc, serializer), doc)
    else:
        out["reason"] = doc.get("reason") or (doc.get("details") or {}).get("reason") or status
    return out
