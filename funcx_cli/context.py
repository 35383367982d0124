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
            from funcx_cli.ids import IdError

            if isinstance(e, FuncxError):
                fail(_one_line(e), exit_code_for(e))
            if isinstance(e, IdError):
                fail(str(e), e.code)
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
    """``data`` as indented JSON on stdout (numpy and other values as JSON
    values: :mod:`funcx_cli.jsonvalues`)."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2) + "\n")


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_document(doc: dict, fmt: str) -> None:
    """One record: JSON, or a two-column table."""
    if fmt == "json":
        print_json(doc)
    else:
        console().print(table(None, ["Field", "Value"], [[k, v] for k, v in doc.items()]))


def table(title: str | None, columns: list[str], rows: list[list[Any]],
          no_wrap: tuple[str, ...] = ()):
    """A rich table.  Cells are plain text (``[x]`` shows as ``[x]``: no
    markup from user data); pass a ``rich.text.Text`` for a styled cell.
    Columns named in ``no_wrap`` never wrap (ids): they are cut with "…" only
    when the terminal is too narrow for them."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(title) if title else None, show_lines=False)
    for c in columns:
        if c in no_wrap:
            t.add_column(c, no_wrap=True, overflow="ellipsis")
        else:
            t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[v if isinstance(v, Text) else Text("" if v is None else str(v))
                    for v in r])
    return t


def jsonable(value: Any) -> Any:
    """``value`` as JSON values (numpy arrays as lists, never a cut repr)."""
    from funcx_cli.jsonvalues import to_json_value

    return to_json_value(value)


def when(epoch: Any) -> str:
    """An epoch (number or string) as local date and time, for human output."""
    import datetime

    try:
        return datetime.datetime.fromtimestamp(float(epoch)).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return ""


def styled_status(status: str):
    """``status`` in its colour (``funcx.sdk.render``), as a ``rich.text.Text``."""
    from rich.text import Text

    from funcx.sdk.render import status_terminal_color

    return Text(status, style=status_terminal_color(status) or "")
