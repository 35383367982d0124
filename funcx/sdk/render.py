"""How task and endpoint states look, defined once for every front end: the
colour of each status (HTML for notebooks, a terminal colour for the CLI) and
the text that explains a failed task."""
from __future__ import annotations

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


def status_color(status: str | None, default: str = DEFAULT_COLOR) -> str:
    """The HTML colour of ``status``."""
    return STATUS_COLORS.get(str(status), default)


def status_terminal_color(status: str | None) -> str | None:
    """The terminal colour of ``status``, or None to print it plain."""
    return STATUS_TERMINAL_COLORS.get(str(status))


def error_text(exc: BaseException) -> str:
    """What to show for a failed task: the remote traceback where the endpoint
    sent one, else ``Type: message``."""
    text = getattr(exc, "remote_traceback", None) or getattr(exc, "remote_data", None)
    return (text or f"{type(exc).__name__}: {exc}").rstrip()
