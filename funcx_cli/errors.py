"""Exit codes and one-line error messages of the ``funcx`` command."""
from __future__ import annotations

import typer

OK, FAILED, USAGE, NOT_FOUND, NOT_ALLOWED, UNREACHABLE = 0, 1, 2, 3, 4, 5


def fail(message: str, code: int = FAILED) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def exit_code_for(exc: BaseException) -> int:
    from funcx.errors import FuncxAPIError, NotLoggedIn, ServiceUnreachable

    if isinstance(exc, ServiceUnreachable):
        return UNREACHABLE
    if isinstance(exc, NotLoggedIn):
        return NOT_ALLOWED
    if isinstance(exc, FuncxAPIError):
        if exc.http_status == 404:
            return NOT_FOUND
        if exc.http_status in (401, 403):
            return NOT_ALLOWED
        if exc.http_status in (400, 413, 422):
            return USAGE
    return FAILED
