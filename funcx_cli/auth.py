"""``funcx login|logout|whoami``."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from funcx_cli.context import (
    STATE,
    FormatOption,
    check_format,
    handles_errors,
    print_json,
)
from funcx_cli.errors import NOT_ALLOWED, fail


@handles_errors
def login(token_file: Path = typer.Option(None, "--token-file", exists=True, dir_okay=False,
                                             help="read the token from this file"),
          fmt: str = FormatOption) -> None:
    """Store a bearer token for this machine (prompted without echo, from
    --token-file, or from standard input when it is not a terminal).

    Example: funcx login --token-file ~/my.token
    """
    from funcx.errors import Unauthorized
    from funcx.sdk.login import login_with_token
    from funcx.sdk.service_address import resolve_service_address

    fmt = check_format(fmt)
    if token_file is not None:
        token = token_file.read_text().strip()
    elif not sys.stdin.isatty():
        token = sys.stdin.readline().strip()
    else:
        token = typer.prompt("Token", hide_input=True).strip()
    if not token:
        fail("no token given", 2)
    try:
        me = login_with_token(resolve_service_address(STATE["service"]), token)
    except Unauthorized:
        fail("the service does not accept this token", NOT_ALLOWED)
    if fmt == "json":
        print_json(me)
    else:
        typer.echo(f"Logged in to {me['service']} as {me['user']}")


@handles_errors
def logout() -> None:
    """Revoke the stored token on the service and delete it here.

    Example: funcx logout
    """
    from funcx.errors import FuncxError
    from funcx.home import credentials_path, stored_token
    from funcx.sdk.service_address import resolve_service_address
    from funcx.sdk.web_client import WebClient

    token = stored_token()
    if not token:
        typer.echo("Not logged in")
        return
    try:
        WebClient(resolve_service_address(STATE["service"]), token).post("/v2/logout")
    except FuncxError as e:  # unreachable service or a dead token: still forget it here
        typer.echo(f"Warning: could not revoke the token on the service ({e})", err=True)
    credentials_path().unlink(missing_ok=True)
    typer.echo("Logged out")


@handles_errors
def whoami(fmt: str = FormatOption) -> None:
    """Show who the stored credentials belong to.

    Example: funcx whoami --format json
    """
    from funcx_cli.context import client

    fmt = check_format(fmt)
    fxc = client()
    me = fxc.whoami()
    if fmt == "json":
        print_json({"user": me["username"], "user_id": me["user_id"],
                    "service": fxc.funcx_service_address})
    else:
        typer.echo(f"{me['username']} ({me['user_id']}) at {fxc.funcx_service_address}")
