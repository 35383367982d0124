"""How task and endpoint states and task failures look, defined once for every
front end: the colour of each status (HTML for notebooks, a terminal colour
for the CLI) and the display of a failed task — its remote traceback, with
the source lines this side can supply, shown once and without local plumbing
frames, after what the task printed.  ``%funcx run``, ``future.result()`` in
a notebook or a script, the HTML reprs and ``funcx task result`` all use it."""
from __future__ import annotations

import linecache
import re
from typing import Any

from funcx.protocol.failure_text import last_line

#: status -> HTML colour (notebook reprs, the task monitor, the endpoint panel)
STATUS_COLORS: dict[str, str] = {
    "success": "#2e7d32", "failed": "#c62828", "cancelled": "#9e9e9e",
    "running": "#1565c0", "online": "#2e7d32", "offline": "#c62828",
}
#: a status without a colour of its own
DEFAULT_COLOR = "#6d6d6d"

#: status -> terminal colour name (rich markup in the CLI)
STATUS_TERMINAL_COLORS: dict[str, str] = {
    "success": "green", "failed": "red", "cancelled": "yellow", "running": "cyan",
}

#: how the first line of a failed task's display begins
REMOTE_HEADER = "Remote traceback (from the endpoint"
_RED, _RESET = "\x1b[31m", "\x1b[0m"
_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in ')


def status_color(status: str | None, default: str = DEFAULT_COLOR) -> str:
    """The HTML colour of ``status``."""
    return STATUS_COLORS.get(str(status), default)


def status_terminal_color(status: str | None) -> str | None:
    """The terminal colour of ``status``, or None to print it plain."""
    return STATUS_TERMINAL_COLORS.get(str(status))


def cached_source(filename: str, lineno: int) -> str:
    """Line ``lineno`` of ``filename`` where this process holds that source in
    memory only (a notebook cell, an IPython input, a ``%%funcx`` cell: a
    ``linecache`` entry with no modification time), else "".  Never opens a
    file: the name comes from the endpoint's traceback, which is not trusted
    (a path such as ``/etc/passwd`` or a FIFO must not be read here)."""
    entry = linecache.cache.get(filename)
    if not isinstance(entry, tuple) or len(entry) != 4 or entry[1] is not None:
        return ""  # not cached, a lazy loader, or a file on disk
    lines = entry[2]
    if not isinstance(lines, list) or not 1 <= lineno <= len(lines):
        return ""
    line = lines[lineno - 1]
    return line.strip() if isinstance(line, str) else ""


def fill_source(lines: list[str]) -> list[str]:
    """Traceback lines with each frame's source line where the endpoint could
    not give one (a function defined in a notebook cell) and this process has
    it in memory (:func:`cached_source`; files are never read).  Called when
    the traceback is displayed, not when the exception is rebuilt."""
    out = []
    for i, text in enumerate(lines):
        out.append(text)
        m = _FRAME.match(text)
        if m is None:
            continue
        indent = " " * (len(text) - len(text.lstrip()) + 2)
        following = (lines[i + 1:] or [""])[0]
        if following.startswith(indent) and not _FRAME.match(following):
            continue  # the endpoint sent the line
        source = cached_source(m["file"], int(m["line"]))
        if source:
            out.append(indent + source)
    return out


def remote_text(exc: BaseException) -> str | None:
    """The remote traceback text an exception carries, if it came from a task."""
    text = getattr(exc, "remote_traceback", None) or getattr(exc, "remote_data", None)
    return str(text) if text else None


def captured(exc: Any, stream: str) -> str:
    """What the task wrote to ``stream`` (``stdout``/``stderr``), as text."""
    value = getattr(exc, stream, "") or ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value if isinstance(value, str) else ""


def error_summary(exc: BaseException) -> str:
    """One line naming the failure, ``ValueError: too noisy`` (never the
    type twice): the remote traceback's last line, else ``Type: message``."""
    line = last_line(remote_text(exc))
    if line:
        return line
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def error_text(exc: BaseException, fill: bool = True) -> str:
    """What to show for a failed task: the remote traceback where the endpoint
    sent one (with the source lines this side holds in memory unless ``fill``
    is False), else ``Type: message``."""
    text = remote_text(exc)
    if not text:
        return error_summary(exc)
    lines = text.rstrip().splitlines()
    return "\n".join(fill_source(lines) if fill else lines)


def output_lines(exc: Any) -> list[str]:
    """What the task printed before it failed, under a heading per stream:
    the last lines of each (bounded; the exception's ``.stdout`` / ``.stderr``
    keep all of it)."""
    from funcx.protocol.output_limits import STREAMS, display_tail

    out: list[str] = []
    for stream in STREAMS:
        text = captured(exc, stream)
        if text.strip():
            out += [f"--- the task's {stream} ---", *display_tail(text, stream)]
    return out


def remote_header(task_id: str | None = None) -> str:
    """``Remote traceback (from the endpoint, task ID):``."""
    return REMOTE_HEADER + (f", task {task_id}" if task_id else "") + "):"


def exception_lines(exc: BaseException, color: bool = False, fill: bool = True) -> list[str]:
    """The display of a failed task: a heading (with its task id), what it
    printed, then its remote traceback — once, with source lines (``fill``),
    and none of this side's frames (``concurrent.futures``, funcX's own)."""
    head = remote_header(getattr(exc, "task_id", None))
    return [f"{_RED}{head}{_RESET}" if color else head, *output_lines(exc),
            *error_text(exc, fill).splitlines()]


class RemoteTracebackDisplay:
    """IPython shows ``exc._render_traceback_()`` instead of its own
    traceback: set on a task's exception, the notebook shows the remote
    traceback (:func:`exception_lines`) rather than the local frames that
    re-raised it.  A plain object, so the exception still pickles."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __call__(self) -> list[str]:
        return exception_lines(self.exc, color=True)


def attach_display(exc: BaseException, task_id: str | None = None) -> BaseException:
    """Make ``exc`` (a task's failure) show as :func:`exception_lines` in
    IPython and remember its task id; returned for chaining."""
    try:
        if task_id and not getattr(exc, "task_id", None):
            exc.task_id = task_id  # type: ignore[attr-defined]
        exc._render_traceback_ = RemoteTracebackDisplay(exc)  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__: the plain display
        pass
    return exc


def remote_note(exc: BaseException) -> str:
    """The note a script's traceback prints after the exception: what the
    task printed and its remote traceback as the endpoint sent it (its heading
    in the form scripts have always printed).  Made when the exception is
    rebuilt, so it adds no source lines (:func:`fill_source` runs at display
    time: IPython's display, ``error_text``)."""
    task_id = getattr(exc, "task_id", None)
    return "\n".join(["", f"--- remote traceback (task {task_id}) ---",
                      *exception_lines(exc, fill=False)[1:]])
