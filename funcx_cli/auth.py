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
from funcx_cli.errors import NOT_ALLOWED, USAGE, fail


@handles_errors
def login(token_file: Path = typer.Option(
        None, "--token-file", exists=True, dir_okay=False,
        help="read the token from this file: the service's credentials JSON "
             "($FUNCX_HOME/credentials/token.json on the service host), a Globus token JSON "
             "(access_token) or the bare token"),
          fmt: str = FormatOption) -> None:
    """Store a bearer token for this machine (prompted without echo, from
    --token-file, or from standard input when it is not a terminal).

    When the file names its service (service_url) and none is configured
    here (--service, FUNCX_SERVICE_ADDRESS, a local service), that service
    is used.  No message ever shows the token.

    Example: funcx login --token-file ~/token.json
    """
    from funcx.errors import Unauthorized
    from funcx.sdk.login import (
        BadTokenFile,
        HandedToken,
        login_with_token,
        parse_token_text,
        read_token_file,
    )
    from funcx.sdk.service_address import configured_service_address, login_service_address

    fmt = check_format(fmt)
    try:
        if token_file is not None:
            handed = read_token_file(token_file)
        elif not sys.stdin.isatty():
            handed = parse_token_text(sys.stdin.read(1 << 20), "the token on standard input")
        else:
            handed = HandedToken(typer.prompt("Token", hide_input=True).strip(), "typed")
    except BadTokenFile as e:
        fail(str(e), USAGE)
    if not handed.token:
        fail("no token given", USAGE)
    service, adopted = login_service_address(STATE["service"], handed.service_url)
    source = token_file if token_file is not None else "the token"
    if adopted:
        typer.echo(f"Using the service named in {source}: {service} (no service is configured "
                   "here; pass --service or set FUNCX_SERVICE_ADDRESS to choose another)", err=True)
    elif handed.service_url and handed.service_url != service \
            and configured_service_address(STATE["service"]):
        typer.echo(f"Note: {source} names the service {handed.service_url}; logging in to the "
                   f"configured one, {service}", err=True)
    try:
        me = login_with_token(service, handed.token)
    except BadTokenFile as e:
        fail(str(e), USAGE)
    except Unauthorized:
        fail(f"the service at {service} does not accept this token (from {source}: expired, "
             "revoked, or issued by another service); ask its operator for a new one",
             NOT_ALLOWED)
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
