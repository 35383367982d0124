"""The line that names a task's failure, defined once for the service's task
listing (``GET /v2/tasks``: ``error`` / ``error_type``), the SDK's progress
(``funcx task watch``, the notebook monitor) and the exception displays: the
last non-empty line of the remote traceback, ``ValueError: too noisy``."""
from __future__ import annotations

#: the longest error line kept (a listing's column, a failure group's key)
ERROR_TEXT_MAX = 300


def last_line(text: str | None) -> str:
    """The last non-empty line of ``text``, stripped ("" when there is none)."""
    for line in reversed(str(text or "").splitlines()):
        if line.strip():
            return line.strip()
    return ""


def error_line(text: str | None, default: str = "unknown error",
               most: int = ERROR_TEXT_MAX) -> str:
    """The line that names a failure (:func:`last_line`, else ``default``),
    cut to ``most`` characters with a marker ("…") where cut."""
    line = last_line(text) or default
    return line if len(line) <= most else line[:most - 1] + "…"


def error_type(line: str) -> str:
    """The exception type an error line names (``ValueError`` of
    ``ValueError: too noisy``; a dotted name too), else its first 40 characters."""
    head = line.split(":", 1)[0].strip()
    return head if head and head.replace(".", "").replace("_", "").isalnum() else line[:40]
