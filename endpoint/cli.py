"""``funcx-endpoint``: configure, start, stop and list endpoints (a thin layer
over :mod:`endpoint.daemon`)."""
from __future__ import annotations

import json
import sys

import typer

app = typer.Typer(help="Manage funcX endpoints on this machine.\n\n"
                       "Example: funcx-endpoint configure laptop && funcx-endpoint start laptop",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


def _fail(msg: str, code: int = 1) -> None:
    typer.echo(f"Error: {msg}", err=True)
    raise typer.Exit(code)


@app.command()
def configure(name: str = typer.Argument("default", help="endpoint name"),
              workers: int = typer.Option(0, help="workers per node (0: one per core)")) -> None:
    """Write $FUNCX_HOME/NAME/config.py, a commented template.

    Example: funcx-endpoint configure laptop --workers 4
    """
    from endpoint.config_file import write_template
    from endpoint.paths import BadEndpointName, EndpointDir

    try:
        ep = EndpointDir(name)
    except BadEndpointName as e:
        _fail(str(e), 2)
    if ep.exists():
        _fail(f"endpoint {name!r} is already configured at {ep.config_file}")
    write_template(ep.config_file, name, workers)
    typer.echo(f"Created {ep.config_file}\nStart it with: funcx-endpoint start {name}")


@app.command()
def start(name: str = typer.Argument("default", help="endpoint name")) -> None:
    """Register the endpoint with the service and run it as a daemon.

    Example: funcx-endpoint start laptop
    """
    from endpoint.config_file import ConfigError
    from endpoint.daemon import EndpointError
    from endpoint.daemon import start as start_daemon
    from endpoint.paths import BadEndpointName

    try:
        eid = start_daemon(name)
    except (EndpointError, ConfigError, BadEndpointName) as e:
        _fail(str(e))
    typer.echo(f"Endpoint {name} is running: {eid}")


@app.command()
def stop(name: str = typer.Argument("default", help="endpoint name")) -> None:
    """Stop the endpoint daemon, its managers and workers.

    Example: funcx-endpoint stop laptop
    """
    from endpoint.daemon import stop as stop_daemon

    if stop_daemon(name):
        typer.echo(f"Endpoint {name} stopped")
    else:
        typer.echo(f"Endpoint {name} was not running")


@app.command()
def restart(name: str = typer.Argument("default", help="endpoint name")) -> None:
    """Stop (if running) and start the endpoint.

    Example: funcx-endpoint restart laptop
    """
    from endpoint.daemon import stop as stop_daemon

    stop_daemon(name)
    start(name)


@app.command("list")
def list_(fmt: str = typer.Option("table", "--format", help="table or json")) -> None:
    """List configured endpoints with status and id.

    Example: funcx-endpoint list --format json
    """
    from endpoint.daemon import list_endpoints

    rows = list_endpoints()
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if fmt != "table":
        _fail("--format must be table or json", 2)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="funcX endpoints")
    for col in ("Name", "Status", "Endpoint ID"):
        table.add_column(col)
    colors = {"Active": "green", "Inactive": "red", "Initialized": "yellow"}
    for r in rows:
        table.add_row(r["name"], f"[{colors[r['status']]}]{r['status']}[/]", r["endpoint_id"] or "")
    Console().print(table)


@app.command()
def logs(name: str = typer.Argument("default"), lines: int = typer.Option(50, "-n")) -> None:
    """Print the end of the endpoint's log.

    Example: funcx-endpoint logs laptop -n 100
    """
    from endpoint.paths import EndpointDir

    path = EndpointDir(name).log_file
    if not path.exists():
        _fail(f"no log at {path}")
    sys.stdout.write("\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n")


if __name__ == "__main__":
    app()
