"""Exit codes and one-line error messages of both command lines, ``funcx`` and
``funcx-endpoint`` (defined here once; the README's exit-code table lists them).

=====  =====================================================================
code   meaning
=====  =====================================================================
0      success
1      failed: a task failed, a request was refused for another reason
2      usage: a bad option, argument, JSON argument or input line
3      not found: no such task, function, endpoint, log, or endpoint directory
4      not logged in, or not allowed
5      the service is unreachable
6      still pending: ``--timeout`` passed before every task finished
130    interrupted (Ctrl-C); the tasks go on running remotely
143    terminated (SIGTERM) while waiting; the tasks go on running remotely
=====  =====================================================================

Codes 6, 130 and 143 come with the command that fetches the results later
(``funcx task result ID`` or ``funcx map --resume GROUP``).
"""
from __future__ import annotations

import typer

OK, FAILED, USAGE, NOT_FOUND, NOT_ALLOWED, UNREACHABLE = 0, 1, 2, 3, 4, 5
#: gave up waiting (``--timeout``) while tasks are still pending
PENDING = 6
#: Ctrl-C (SIGINT), as shells report it: 128 + 2
INTERRUPTED = 130
#: SIGTERM while ``funcx run`` / ``funcx map`` waited: 128 + 15
TERMINATED = 143

#: every exit code with its one-line meaning (``funcx --help``, README)
EXIT_CODES: dict[int, str] = {
    OK: "success",
    FAILED: "failed (a task failed, or the request was refused)",
    USAGE: "usage error (bad option, argument, JSON argument or input line)",
    NOT_FOUND: "not found (task, function, endpoint, log)",
    NOT_ALLOWED: "not logged in, or not allowed",
    UNREACHABLE: "the service is unreachable",
    PENDING: "still pending when --timeout passed (resume later)",
    INTERRUPTED: "interrupted with Ctrl-C (resume later)",
    TERMINATED: "terminated with SIGTERM while waiting (resume later)",
}


def fail(message: str, code: int = FAILED) -> None:
    """Print ``Error: message`` on stderr and exit with ``code``."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def exit_code_for(exc: BaseException) -> int:
    """The exit code of an SDK exception."""
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
