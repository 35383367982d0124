"""How ``funcx run`` shows a shell function's result (a ``ShellResult``, or
the dict of one made with ``return_dict=True``): the command's stdout on
stdout, its stderr on stderr, and the command's own exit status as the CLI's
(124 at its walltime), as ``ssh host cmd`` does."""
from __future__ import annotations

import sys
from typing import Any

import typer

from funcx_cli.context import print_json

SHELL_FIELDS = ("cmd", "stdout", "stderr", "returncode", "exception_name")


def shell_fields(value: Any) -> dict[str, Any] | None:
    """``value``'s five fields if it is a shell result (object or dict), else None."""
    from funcx.sdk.shell_function import ShellResult

    if isinstance(value, ShellResult):
        return value.as_dict()
    if isinstance(value, dict) and set(value) == set(SHELL_FIELDS):
        return dict(value)
    return None


def report_shell(tid: str, status: str, fields: dict[str, Any], fmt: str) -> None:
    """Print a shell result and exit with its command's return code."""
    if fmt == "json":
        print_json({"task_id": tid, "status": status, "result": fields})
    else:
        sys.stdout.write(fields["stdout"] or "")
        sys.stdout.flush()
        sys.stderr.write(fields["stderr"] or "")
        if fields.get("exception_name"):
            typer.echo(f"[{fields['exception_name']}: the command ran past its walltime]",
                       err=True)
    code = fields.get("returncode")
    if isinstance(code, int) and code != 0:
        raise typer.Exit(code if 0 < code < 256 else 1)
