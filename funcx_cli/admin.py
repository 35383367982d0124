"""``funcx admin``: users, service accounts and tokens, on the service host."""
from __future__ import annotations

import typer

from funcx_cli.context import (
    FormatOption,
    check_format,
    console,
    handles_errors,
    print_json,
    table,
    when,
)
from funcx_cli.errors import FAILED, NOT_FOUND, fail

app = typer.Typer(help="Administer the service's users (run on the service host).\n\n"
                       "Example: funcx admin user add alice --format json",
                  no_args_is_help=True)
user_app = typer.Typer(help="Users and their tokens.\n\nExample: funcx admin user list",
                       no_args_is_help=True)
client_app = typer.Typer(help="Service-account clients (FUNCX_SDK_CLIENT_ID/SECRET).\n\n"
                              "Example: funcx admin client add pipeline-bot",
                         no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(client_app, name="client")


@handles_errors  # one line, no traceback, for any other failure too (unless --debug)
def _run(fn, *args):
    from backend.admin import AdminError

    try:
        from backend.admin import connect

        return fn(connect(), *args)
    except AdminError as e:
        fail(str(e), NOT_FOUND if "no user" in str(e) else FAILED)


def _show_secret(data: dict, fmt: str, what: str) -> None:
    if fmt == "json":
        print_json(data)
    else:
        for k, v in data.items():
            typer.echo(f"{k}: {v}")
        typer.echo(f"The {what} is shown only this once; it is stored hashed.", err=True)


@user_app.command("add")
def user_add(name: str, fmt: str = FormatOption) -> None:
    """Create a user and print its first token.

    Example: funcx admin user add alice --format json
    """
    from backend.admin import add_user

    _show_secret({k: v for k, v in _run(add_user, name).items()}, check_format(fmt), "token")


@user_app.command("token")
def user_token(name: str, ttl: int = typer.Option(None, help="lifetime in seconds"),
               fmt: str = FormatOption) -> None:
    """Issue another token for a user.

    Example: funcx admin user token alice --ttl 86400
    """
    from backend.admin import issue_token

    _show_secret(_run(issue_token, name, ttl), check_format(fmt), "token")


@user_app.command("list")
def user_list(fmt: str = FormatOption) -> None:
    """List users.

    Example: funcx admin user list --format json
    """
    from backend.admin import list_users

    rows = _run(list_users)
    if check_format(fmt) == "json":
        print_json(rows)
    else:
        console().print(table(None, ["User", "User ID", "Kind", "Disabled", "Created"],
                              [[r["user"], r["user_id"], r["kind"], "yes" if r["disabled"] else "",
                                when(r["created_at"])] for r in rows]))


@user_app.command("disable")
def user_disable(name: str) -> None:
    """Disable a user: every token of theirs stops working at once.

    Example: funcx admin user disable mallory
    """
    from backend.admin import set_disabled

    _run(set_disabled, name, True)
    typer.echo(f"Disabled {name}")


@user_app.command("enable")
def user_enable(name: str) -> None:
    """Enable a disabled user again.

    Example: funcx admin user enable mallory
    """
    from backend.admin import set_disabled

    _run(set_disabled, name, False)
    typer.echo(f"Enabled {name}")


@user_app.command("multi-user-admin")
def user_multi_user_admin(name: str, revoke: bool = typer.Option(
        False, "--revoke", help="no longer a multi-user administrator")) -> None:
    """Make a user a multi-user administrator: the service then runs the identity
    mapping rules and user config schema their multi-user endpoints publish
    (refusing unmapped identities and bad configs at submit). Others'
    multi-user endpoints decide alone, after the submit.

    Example: funcx admin user multi-user-admin site-ops
    """
    from backend.admin import set_multi_user_admin

    _run(set_multi_user_admin, name, not revoke)
    typer.echo(f"{name} is {'no longer ' if revoke else ''}a multi-user administrator")


@client_app.command("add")
def client_add(name: str, user: str = typer.Option(None, "--user", help="act as this existing user"),
               fmt: str = FormatOption) -> None:
    """Create a client id/secret pair (a service account).

    Example: funcx admin client add pipeline-bot
    """
    from backend.admin import add_client

    _show_secret(_run(add_client, name, user), check_format(fmt), "client secret")


dead_app = typer.Typer(help="Entries refused at a trust boundary (malformed, or naming another "
                            "endpoint's task), with their origin and reason.\n\n"
                            "Example: funcx admin dead-letters list --count 20",
                       no_args_is_help=True)
app.add_typer(dead_app, name="dead-letters")


@dead_app.command("list")
def dead_letters_list(count: int = typer.Option(100, "--count", "-n", min=1, max=10_000,
                                                help="show at most this many, newest first"),
                      fmt: str = FormatOption) -> None:
    """List refused entries, newest first (payloads are never kept, only their length).

    Example: funcx admin dead-letters list --format json
    """
    from backend.store.deadletters import list_recent

    rows = _run(list_recent, count)
    if check_format(fmt) == "json":
        print_json(rows)
    else:
        console().print(table(None, ["When", "Origin", "Reason", "Stream entry", "Fields"],
                              [[when(r.get("t")), r.get("origin", ""), r.get("reason", ""),
                                r.get("entry_id", ""), r.get("fields", "")[:80]] for r in rows]))


@dead_app.command("clear")
def dead_letters_clear() -> None:
    """Remove every dead letter.

    Example: funcx admin dead-letters clear
    """
    from backend.store.deadletters import clear

    typer.echo(f"Cleared {_run(clear)} dead letter(s)")
