"""``funcx group create|list|add-member|remove-member`` (local groups)."""
from __future__ import annotations

import typer

from funcx_cli.context import (
    FormatOption,
    check_format,
    client,
    console,
    handles_errors,
    print_json,
    table,
)

app = typer.Typer(help="Groups: share functions with their members.\n\n"
                       "Example: funcx group create my-lab", no_args_is_help=True)


@app.command()
@handles_errors
def create(name: str, description: str = typer.Option("", help="what the group is for"),
           fmt: str = FormatOption) -> None:
    """Create a group you own; prints its id.

    Example: funcx group create my-lab
    """
    gid = client().create_group(name, description)
    print_json({"group_id": gid, "name": name}) if check_format(fmt) == "json" else typer.echo(gid)


@app.command("list")
@handles_errors
def list_(fmt: str = FormatOption) -> None:
    """List the groups you are in.

    Example: funcx group list
    """
    rows = client().get_groups()
    if check_format(fmt) == "json":
        print_json(rows)
    else:
        console().print(table(None, ["Name", "Group ID", "Owner", "Members"],
                              [[r.get("name"), r["group_id"], r.get("owner"), r.get("members")]
                               for r in rows]))


@app.command("add-member")
@handles_errors
def add_member(group_id: str, user: str = typer.Argument(..., help="user name or id")) -> None:
    """Add a user to a group you own.

    Example: funcx group add-member 7a3c... bob
    """
    client().add_group_member(group_id, user)
    typer.echo(f"Added {user}")


@app.command("remove-member")
@handles_errors
def remove_member(group_id: str, user: str = typer.Argument(..., help="user name or id")) -> None:
    """Remove a user from a group you own (or yourself from any group).

    Example: funcx group remove-member 7a3c... bob
    """
    client().remove_group_member(group_id, user)
    typer.echo(f"Removed {user}")
