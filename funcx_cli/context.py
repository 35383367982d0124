"""What every ``funcx`` command shares: global options, the SDK client, error
handling (exit codes, one-line messages, no traceback unless --debug) and
output (human tables on stdout, ``--format json``, progress on stderr)."""
from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import typer

from funcx_cli.errors import FAILED, USAGE, exit_code_for, fail

STATE: dict[str, Any] = {"debug": False, "service": None}

FormatOption = typer.Option("text", "--format", "-F", help="text or json",
                            case_sensitive=False)


def client():
    """A FuncXClient for the selected service (throttling off: the CLI batches itself)."""
    from funcx.sdk.client import FuncXClient

    fxc = FuncXClient(STATE["service"])
    fxc.throttling_enabled = False
    return fxc


def handles_errors(fn: Callable) -> Callable:
    """Turn exceptions into one clear line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except Exception as e:
            if STATE["debug"]:
                raise
            from funcx.errors import FuncxError

            if isinstance(e, FuncxError):
                fail(_one_line(e), exit_code_for(e))
            if isinstance(e, (ValueError, json.JSONDecodeError)):
                fail(f"{e}", USAGE)
            fail(f"{type(e).__name__}: {e} (run with --debug for details)", FAILED)

    return wrapper


def _one_line(e: BaseException) -> str:
    from funcx.errors import FuncxAPIError

    if isinstance(e, FuncxAPIError):
        hint = {401: " (run `funcx login`)", 403: "", 404: ""}.get(e.http_status, "")
        return f"{e.message} [{e.code}]{hint}"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_format(fmt: str) -> str:
    fmt = fmt.lower()
    if fmt not in ("text", "json"):
        fail("--format must be text or json", USAGE)
    return fmt


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_document(doc: dict, fmt: str) -> None:
    """One record: JSON, or a two-column table."""
    if fmt == "json":
        print_json(doc)
    else:
        console().print(table(None, ["Field", "Value"], [[k, v] for k, v in doc.items()]))


def table(title: str | None, columns: list[str], rows: list[list[Any]]):
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    return t


def parse_value(text: str) -> Any:
    """A CLI argument: JSON where it parses, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def when(epoch: Any) -> str:
    """An epoch (number or string) as local date and time, for human output."""
    import datetime

    try:
        return datetime.datetime.fromtimestamp(float(epoch)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return ""


def styled_status(status: str) -> str:
    """``status`` in its colour (``funcx.sdk.render``), as rich markup."""
    from funcx.sdk.render import status_terminal_color

    style = status_terminal_color(status)
    return f"[{style}]{status}[/]" if style else status
