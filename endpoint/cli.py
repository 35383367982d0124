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
def init() -> None:
    """Create $FUNCX_HOME and check that the service and credentials are there.

    Example: funcx-endpoint init
    """
    from funcx.defaults import funcx_home
    from funcx.errors import FuncxError
    from funcx.sdk.login import LocalLoginManager
    from funcx.sdk.service_address import resolve_service_address
    from funcx.sdk.web_client import WebClient

    home = funcx_home()
    url = resolve_service_address()
    try:
        me = WebClient(url, LocalLoginManager().get_token).get("/v2/whoami")
    except FuncxError as e:
        _fail(f"{home} is ready, but the service is not usable: {e}", 5)
    typer.echo(f"{home} is ready; service {url}, logged in as {me['username']}.\n"
               "Next: funcx-endpoint configure NAME && funcx-endpoint start NAME")


@app.command()
def configure(name: str = typer.Argument("default", help="endpoint name"),
              workers: int = typer.Option(0, help="workers per node (0: one per core)"),
              template: str = typer.Option("local", help="local, slurm, pbs or kubernetes")) -> None:
    """Write $FUNCX_HOME/NAME/config.py, a commented template.

    Example: funcx-endpoint configure hpc --template slurm
    """
    from endpoint.config_file import write_template
    from endpoint.paths import BadEndpointName, EndpointDir

    try:
        ep = EndpointDir(name)
    except BadEndpointName as e:
        _fail(str(e), 2)
    if ep.exists():
        _fail(f"endpoint {name!r} is already configured at {ep.config_file}")
    try:
        write_template(ep.config_file, name, workers, template)
    except ValueError as e:
        _fail(str(e), 2)
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
def status(name: str = typer.Argument("default", help="endpoint name"),
           fmt: str = typer.Option("table", "--format", help="table or json")) -> None:
    """Show the daemon, its managers, workers and outstanding tasks.

    Example: funcx-endpoint status laptop
    """
    from endpoint.daemon import endpoint_info
    from funcx.errors import FuncxError

    info = endpoint_info(name)
    if info["endpoint_id"]:
        try:
            from funcx.sdk.client import FuncXClient

            info["service_status"] = FuncXClient().get_endpoint_status(info["endpoint_id"])
        except FuncxError as e:
            info["service_status"] = {"status": "unknown", "error": str(e), "details": {}}
    if fmt == "json":
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{name}: {info['status']}" + (f" (pid {info['pid']})" if info["pid"] else ""))
    typer.echo(f"  endpoint id: {info['endpoint_id'] or '(never started)'}")
    st = info.get("service_status")
    if st:
        d = st.get("details", {})
        typer.echo(f"  service says: {st['status']}; {d.get('managers', 0)} manager(s), "
                   f"{d.get('total_workers', 0)} worker(s), {d.get('idle_workers', 0)} idle, "
                   f"{d.get('outstanding_tasks', 0)} outstanding task(s)")
        for m in d.get("manager_details", []):
            typer.echo(f"    manager {m['manager_id']} on {m['hostname']} (block {m['block_id']}): "
                       f"{m['workers']} workers, {m['tasks']} task(s)")


@app.command()
def logs(name: str = typer.Argument("default"), lines: int = typer.Option(50, "-n"),
         follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new lines")) -> None:
    """Print the end of the endpoint's log.

    Example: funcx-endpoint logs laptop -n 100 -f
    """
    import time

    from endpoint.paths import EndpointDir

    path = EndpointDir(name).log_file
    if not path.exists():
        _fail(f"no log at {path}", 3)
    with open(path, errors="replace") as f:
        sys.stdout.write("".join(f.readlines()[-lines:]))
        sys.stdout.flush()
        while follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.25)  # like tail -f


@app.command()
def delete(name: str = typer.Argument(..., help="endpoint name"),
           yes: bool = typer.Option(False, "--yes", "-y", help="do not ask")) -> None:
    """Stop the endpoint, delete it on the service, and remove its directory.

    Example: funcx-endpoint delete old-laptop --yes
    """
    import shutil

    from endpoint.daemon import saved_id
    from endpoint.daemon import stop as stop_daemon
    from endpoint.paths import EndpointDir
    from funcx.errors import FuncxAPIError, FuncxError

    ep = EndpointDir(name)
    if not ep.path.exists():
        _fail(f"no endpoint named {name!r}", 3)
    if not yes:
        typer.confirm(f"Delete endpoint {name!r} and its queued tasks?", abort=True)
    stop_daemon(name)
    eid = saved_id(ep)
    if eid:
        try:
            from funcx.sdk.client import FuncXClient

            FuncXClient().delete_endpoint(eid)
        except FuncxAPIError as e:
            if e.http_status != 404:
                _fail(f"the service refused to delete {eid}: {e.message}")
        except FuncxError as e:
            _fail(f"cannot reach the service to delete {eid}: {e}", 5)
    shutil.rmtree(ep.path)
    typer.echo(f"Deleted endpoint {name}" + (f" ({eid})" if eid else ""))


if __name__ == "__main__":
    app()
