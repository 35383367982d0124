"""``funcx-endpoint``: configure, start, stop and list endpoints (a thin layer
over :mod:`endpoint.daemon`)."""
from __future__ import annotations

import json
import sys

import typer

from funcx_cli.errors import EXIT_CODES, FAILED, NOT_FOUND, UNREACHABLE, USAGE
from funcx_cli.version import show_version

#: the state words of both CLIs: the daemon's own words (the funcX manual's
#: Active / Inactive / Initialized) as ``funcx endpoint list`` says them
STATE_WORDS = {"Active": "online", "Inactive": "offline", "Initialized": "initialized"}

app = typer.Typer(help="Manage funcX endpoints on this machine.\n\n"
                       "Example: funcx-endpoint configure laptop && funcx-endpoint start laptop\n\n"
                       "Managers may also be started by hand on compute nodes: "
                       "`funcx-endpoint manager-command NAME` prints the command; such "
                       "managers survive `restart` and `stop` and reconnect.\n\n"
                       "Exit codes (as funcx's): " + "; ".join(
                           f"{c} {m}" for c, m in EXIT_CODES.items() if c <= 5),
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


def _fail(msg: str, code: int = FAILED) -> None:
    """``Error: msg`` on stderr, exit ``code`` (the codes of ``funcx_cli.errors``)."""
    typer.echo(f"Error: {msg}", err=True)
    raise typer.Exit(code)


@app.callback()
def main(version: bool = typer.Option(False, "--version", is_eager=True,
                                      callback=lambda v: show_version("funcx-endpoint", v),
                                      help="print the version and exit")) -> None:
    """Manage funcX endpoints on this machine."""


def _state(raw: str) -> str:
    """A daemon state in the words both CLIs use (online, offline, initialized)."""
    return STATE_WORDS.get(raw, raw.lower())


def _choices() -> str:
    """The endpoints configured here with their states, for error messages."""
    from endpoint.daemon import list_endpoints

    rows = list_endpoints()
    return ", ".join(f"{r['name']} ({_state(r['status'])})" for r in rows) or "none"


def _existing(name: str):
    """The directory of configured endpoint ``name``; exit 2 for a bad name,
    3 (listing the choices) for one not configured here."""
    from endpoint.paths import BadEndpointName, EndpointDir

    try:
        ep = EndpointDir(name)
    except BadEndpointName as e:
        _fail(str(e), USAGE)
    if not ep.path.exists():
        _fail(f"no endpoint named {name!r} is configured here (configured: {_choices()})",
              NOT_FOUND)
    return ep


@app.command()
def init() -> None:
    """Create $FUNCX_HOME, its global config.py and the "default" endpoint's
    config, and check that the service and credentials are there.

    Example: funcx-endpoint init
    """
    from endpoint.config_file import GLOBAL_FILE, write_global_template, write_template
    from endpoint.paths import EndpointDir
    from funcx.defaults import funcx_home
    from funcx.errors import FuncxError
    from funcx.sdk.login import default_login_manager
    from funcx.sdk.service_address import resolve_service_address
    from funcx.sdk.web_client import WebClient

    home = funcx_home()
    if write_global_template(home):  # the manual's global options (2.2)
        typer.echo(f"Created {home / GLOBAL_FILE} (global options: endpoint_address...)")
    default = EndpointDir("default")  # the manual's default endpoint profile (2.1)
    if not default.path.exists():
        write_template(default.config_file, default.name)
        typer.echo(f"Created {default.config_file} (the endpoint named \"default\")")
    url = resolve_service_address()
    try:
        # the identity `start` uses: client credentials if set, else the stored token
        me = WebClient(url, default_login_manager(url).get_token).get("/v2/whoami")
    except FuncxError as e:
        _fail(f"{home} is ready, but the service is not usable: {e}", UNREACHABLE)
    typer.echo(f"{home} is ready; service {url}, logged in as {me['username']}.\n"
               "Next: funcx-endpoint configure NAME && funcx-endpoint start NAME")


@app.command()
def configure(name: str = typer.Argument("default", help="endpoint name"),
              workers: int = typer.Option(0, help="workers per node (0: one per core)"),
              template: str = typer.Option("local", help="local, slurm, pbs or kubernetes"),
              multi_user: bool = typer.Option(
                  False, "--multi-user",
                  help="a multi-user endpoint (run by root): each submitter's tasks run as "
                       "their mapped local account; also writes multi_user.yaml, "
                       "identity_mapping.json, user_config_template.yaml.j2, "
                       "user_config_schema.json and a systemd unit")) -> None:
    """Write $FUNCX_HOME/NAME/config.py, a commented template.

    Example: funcx-endpoint configure hpc --template slurm
    Example: funcx-endpoint configure site --multi-user
    """
    from endpoint.config_file import write_template
    from endpoint.paths import BadEndpointName, EndpointDir

    try:
        ep = EndpointDir(name)
    except BadEndpointName as e:
        _fail(str(e), USAGE)
    if ep.exists():
        _fail(f"endpoint {name!r} is already configured at {ep.config_file}")
    if multi_user:
        from endpoint.multiuser.configure import unit_name, write
        from funcx.defaults import funcx_home

        for path in write(ep.path, name, funcx_home()):
            typer.echo(f"Created {path}")
        typer.echo(f"Edit identity_mapping.json, then start it with: funcx-endpoint start {name}\n"
                   f"or at boot: copy {unit_name(name)} to /etc/systemd/system/ "
                   f"(see its first lines)")
        return
    try:
        write_template(ep.config_file, name, workers, template)
    except ValueError as e:
        _fail(str(e), USAGE)
    typer.echo(f"Created {ep.config_file}\nStart it with: funcx-endpoint start {name}")


@app.command()
def start(name: str = typer.Argument("default", help="endpoint name")) -> None:
    """Register the endpoint with the service and run it as a daemon.

    An endpoint not configured yet gets its config.py first (as `configure`
    makes it): edit it, then run `start` again.

    Example: funcx-endpoint start laptop
    """
    from endpoint.config_file import ConfigError, write_template
    from endpoint.daemon import EndpointError
    from endpoint.daemon import start as start_daemon
    from endpoint.paths import BadEndpointName, EndpointDir

    try:
        ep = EndpointDir(name)
    except BadEndpointName as e:
        _fail(str(e), USAGE)
    if not ep.exists():
        # the manual (2.4): start creates the profile; edit it, then start again
        write_template(ep.config_file, name)
        typer.echo(f"Created {ep.config_file}\nEdit it for the resources this endpoint "
                   f"should use, then run `funcx-endpoint start {name}` again to launch it.")
        return
    try:
        eid = start_daemon(name)
    except (EndpointError, ConfigError, BadEndpointName) as e:
        _fail(str(e))
    _echo_config_warnings(name)
    typer.echo(f"Endpoint {name} is running: {eid}")


def _echo_config_warnings(name: str) -> None:
    """Say once, on the terminal, what the endpoint's log says at start about
    options of the funcX reference that are accepted but ignored here."""
    from endpoint.config_file import ConfigError, load
    from endpoint.paths import EndpointDir

    try:
        warnings = load(EndpointDir(name).config_file).start_warnings()
    except ConfigError:
        return
    for text in warnings:
        typer.echo(f"Warning: config: {text}", err=True)


@app.command()
def stop(name: str = typer.Argument(None, help="endpoint name [default: the endpoint "
                                               "named \"default\", if configured]")) -> None:
    """Stop the endpoint daemon, the managers of its blocks and their workers.

    Without a name it stops the endpoint named "default" (the funcX manual);
    where there is none, it lists the endpoints configured here (exit 3).
    Managers started by hand (`funcx-endpoint manager`) are left running: they
    keep their tasks and reconnect when the endpoint starts again.

    Example: funcx-endpoint stop laptop
    """
    from endpoint.daemon import list_endpoints
    from endpoint.daemon import stop as stop_daemon
    from endpoint.paths import EndpointDir

    others: list[str] = []
    if name is None:
        running = [r["name"] for r in list_endpoints() if r["status"] == "Active"]
        if not EndpointDir("default").path.exists():
            _fail("give the endpoint to stop: funcx-endpoint stop NAME (configured here: "
                  f"{_choices()})", NOT_FOUND)
        name = "default"
        others = [n for n in running if n != name]
    else:
        _existing(name)
    if stop_daemon(name):
        typer.echo(f"Endpoint {name} stopped")
    else:
        typer.echo(f"Endpoint {name} was not running"
                   + (f" (running here: {', '.join(others)}; stop one with "
                      f"`funcx-endpoint stop NAME`)" if others else ""))


@app.command()
def restart(name: str = typer.Argument("default", help="endpoint name")) -> None:
    """Stop (if running) and start the endpoint.

    The interchange keeps its port across restarts, so managers started by hand
    (`funcx-endpoint manager`) stay up, reconnect and finish their tasks.

    Example: funcx-endpoint restart laptop
    """
    from endpoint.daemon import stop as stop_daemon

    _existing(name)
    stop_daemon(name)
    start(name)


def _manager_argv(addr: str, keys: str, workers: int, prefetch: int, period: float,
                  threshold: float, accelerators: list[str] | None = None,
                  cpu_affinity: str = "none") -> list[str]:
    argv = ["funcx-endpoint", "manager", "--addr", addr, "--keys", keys, "--workers",
            str(workers), "--prefetch", str(prefetch), "--heartbeat-period", f"{period:g}",
            "--heartbeat-threshold", f"{threshold:g}"]
    if accelerators:
        argv += ["--accelerators", ",".join(accelerators)]
    if cpu_affinity != "none":
        argv += ["--cpu-affinity", cpu_affinity]
    return argv


@app.command("manager-command")
def manager_command(name: str = typer.Argument("default", help="endpoint name"),
                    workers: int = typer.Option(
                        0, help="workers of the manager (0: the endpoint's workers per node)"),
                    ) -> None:
    """Print the command that starts a manager by hand on a compute node.

    It names the interchange address and port, the workers and heartbeats of
    the endpoint's config, and the PATH of the manager key file (never the
    keys): copy that file to the node (keeping it 0600, e.g. with scp -p) or
    share the directory.  The endpoint must have started once (the port it
    chose is kept in its run dir and reused at every start).  A hand-started
    manager survives `funcx-endpoint restart` and `stop`; end it with SIGTERM
    (Ctrl-C).

    Example: funcx-endpoint manager-command hpc
    """
    import shlex

    from endpoint.addresses import is_local_provider, plan, tcp_url
    from endpoint.config_file import ConfigError, load
    from endpoint.curve import MANAGER_FILE
    from endpoint.interchange import PORT_FILE, saved_port
    from endpoint.paths import BadEndpointName, EndpointDir

    try:
        ep = EndpointDir(name)
    except BadEndpointName as e:
        _fail(str(e), USAGE)
    if not ep.exists():
        _fail(f"endpoint {name!r} is not configured; run `funcx-endpoint configure {name}`",
              NOT_FOUND)
    try:
        config = load(ep.config_file)
    except ConfigError as e:
        _fail(str(e), USAGE)
    keys = ep.run_dir / "curve" / MANAGER_FILE
    port = config.interchange_port or saved_port(ep.run_dir / PORT_FILE)
    if not port or not keys.exists():
        _fail(f"endpoint {name!r} has not started yet, so its interchange has no port or "
              f"keys; run `funcx-endpoint start {name}` once first", NOT_FOUND)
    where = plan(config.address, is_local_provider(config.provider))
    argv = _manager_argv(tcp_url(where.advertise, port), str(keys),
                         workers or config.workers_per_node(), config.prefetch_capacity,
                         config.heartbeat_period, config.heartbeat_threshold,
                         config.accelerators, config.cpu_affinity)
    typer.echo(f"# Start a manager for endpoint {name!r} by hand.  On the compute node, with "
               f"this funcX installed:\n"
               f"#  1. copy the manager key file {keys} there, private (mode 0600),\n"
               f"#     e.g. from this host: scp -p {shlex.quote(str(keys))} "
               f"NODE:{shlex.quote(str(keys))}\n"
               f"#     (or share this directory);\n"
               f"#  2. run (it reconnects after outages and restarts; end it with SIGTERM):")
    if where.bind in ("127.0.0.1", "::1") or where.problem:
        typer.echo(f"# NOTE: the interchange listens on {where.bind}"
                   + (f" ({where.problem})" if where.problem else
                      ": only this host can reach it; set `address` in "
                      f"{ep.config_file} to an address the compute nodes reach, then "
                      f"`funcx-endpoint restart {name}`"))
    typer.echo(shlex.join(argv))


@app.command()
def manager(addr: str = typer.Option(..., "--addr",
                                     help="the interchange, tcp://HOST:PORT (see manager-command)"),
            keys: str = typer.Option(..., "--keys",
                                     help="PATH of the 0600 manager key file (never the keys)"),
            workers: int = typer.Option(0, help="worker processes (0: one per core)"),
            prefetch: int = typer.Option(-1, help="tasks held beyond one per worker "
                                                  "(-1: FUNCX_MANAGER_PREFETCH)"),
            heartbeat_period: float = typer.Option(0.0, help="seconds (0: FUNCX_HEARTBEAT_PERIOD_S)"),
            heartbeat_threshold: float = typer.Option(
                0.0, help="silence (s) before it reconnects (0: FUNCX_HEARTBEAT_THRESHOLD_S)"),
            reconnect_max: float = typer.Option(30.0, help="longest wait (s) between reconnects"),
            manager_id: str = typer.Option("", help="its id (default: HOST-RANDOM)"),
            block_id: str = typer.Option("hand", help="label shown in the endpoint's status"),
            working_dir: str = typer.Option("", help="workers' directory (default: a temporary one)"),
            walltime: float = typer.Option(0.0, help="default per-task walltime, s (0: none)"),
            max_walltime: float = typer.Option(0.0, help="bound on any task's walltime, s (0: none)"),
            accelerators: str = typer.Option(
                "", help="accelerator ids, e.g. 0,1,2,3: one worker per accelerator, each "
                         "with its own CUDA_VISIBLE_DEVICES (available_accelerators)"),
            cpu_affinity: str = typer.Option(
                "none", help="pin workers to cores: none, block, block-reverse, alternating "
                             "or list:0,1:2,3"),
            ) -> None:
    """Run a manager started by hand (e.g. on a compute node), in the foreground.

    It connects to the endpoint's interchange with CurveZMQ using the key file,
    runs tasks on its workers, and, when the interchange falls silent (an
    outage, `funcx-endpoint restart`), keeps its tasks and results and
    reconnects with back-off, without end.  The endpoint never stops it:
    end it with SIGTERM or Ctrl-C.  `funcx-endpoint manager-command NAME`
    prints this command with the endpoint's address, port and key file.

    Example: funcx-endpoint manager --addr tcp://login1:54000 --keys ~/manager.key_secret --workers 8
    """
    import os

    from endpoint.launch import ManagerLaunch
    from endpoint.manager import main as manager_main
    from funcx.defaults import setting

    if not addr.startswith("tcp://"):
        _fail(f"--addr must look like tcp://HOST:PORT, not {addr!r}", USAGE)
    period = heartbeat_period or float(setting("HEARTBEAT_PERIOD_S"))
    threshold = heartbeat_threshold or float(setting("HEARTBEAT_THRESHOLD_S"))
    if threshold <= period:
        _fail("--heartbeat-threshold must exceed --heartbeat-period", USAGE)
    from endpoint.affinity import check_cpu_affinity, parse_accelerators

    try:
        devices = parse_accelerators(accelerators)
        cpu_affinity = check_cpu_affinity(cpu_affinity)
    except ValueError as e:
        _fail(str(e), USAGE)
    launch = ManagerLaunch(
        addr=addr, workers=workers or os.cpu_count() or 1, curve_keys=keys, block_id=block_id,
        manager_id=manager_id or None, heartbeat_period=period, heartbeat_threshold=threshold,
        prefetch=prefetch if prefetch >= 0 else int(setting("MANAGER_PREFETCH")),
        walltime=walltime or None, max_walltime=max_walltime or None,
        working_dir=working_dir or None, hand_started=True, reconnect_max=reconnect_max,
        accelerators=",".join(devices), cpu_affinity=cpu_affinity)
    manager_main(launch.to_argv())


@app.command("list")
def list_(fmt: str = typer.Option("table", "--format", help="table or json")) -> None:
    """List configured endpoints with status and id.

    Example: funcx-endpoint list --format json
    """
    from endpoint.daemon import list_endpoints

    rows = [{**r, "status": _state(r["status"])} for r in list_endpoints()]
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    if fmt != "table":
        _fail("--format must be table or json", USAGE)
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # the columns of the funcX manual (2.6 Listing Endpoints), with the state
    # words of `funcx endpoint list`; an endpoint never started has the id "None"
    table = Table(title="funcX endpoints")
    for col in ("Endpoint Name", "Status", "Endpoint ID"):
        table.add_column(col, no_wrap=True)
    colors = {"online": "green", "offline": "red", "initialized": "yellow"}
    cells: list[tuple[str, str, str]] = []
    for r in rows:
        cells.append((r["name"] + (" (multi-user)" if r.get("multi_user") else ""),
                      r["status"], r["endpoint_id"] or "None"))
        for c in r.get("children", []):  # a multi-user endpoint's children, as which account
            cells.append((f"  └ {c['name']} as {c['account']}",
                          "running" if c.get("alive") else "starting", f"pid {c.get('pid')}"))
    for name_cell, state, ident in cells:
        table.add_row(Text(name_cell), Text(state, style=colors.get(state, "")), ident)
    # wide enough that no cell is cut: 3 columns' padding and borders are 10
    widths = [max([len(c[i]) for c in cells] + [len(h)])
              for i, h in enumerate(("Endpoint Name", "Status", "Endpoint ID"))]
    Console(width=max(80, sum(widths) + 10)).print(table)


@app.command()
def status(name: str = typer.Argument("default", help="endpoint name"),
           fmt: str = typer.Option("table", "--format", help="table or json")) -> None:
    """Show the daemon, its managers, workers and outstanding tasks.

    Example: funcx-endpoint status laptop
    """
    from endpoint.daemon import endpoint_info
    from funcx.errors import FuncxError

    _existing(name)
    info = endpoint_info(name)
    info["status"] = _state(info["status"])
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
            origin = "started by hand" if m.get("hand_started") else f"block {m['block_id']}"
            typer.echo(f"    manager {m['manager_id']} on {m['hostname']} ({origin}): "
                       f"{m['workers']} workers, {m['tasks']} task(s)")
    if info.get("multi_user"):
        kids = info.get("children", [])
        typer.echo(f"  multi-user: {len(kids)} child endpoint(s)")
        for c in kids:
            typer.echo(f"    {c['name']}: account {c['account']} (uid {c['uid']}) for "
                       f"{c['identity']}, pid {c['pid']}, {c['outstanding']} outstanding, "
                       f"{c['tasks']} task(s) so far; log {c['log']}")


@app.command()
def logs(name: str = typer.Argument("default"), lines: int = typer.Option(50, "-n"),
         follow: bool = typer.Option(False, "-f", "--follow", help="keep printing new lines"),
         child: str = typer.Option("", "--child",
                                   help="a multi-user endpoint's child (ACCOUNT-ID, as "
                                        "`status` names it): its log instead")) -> None:
    """Print the end of the endpoint's log.

    Example: funcx-endpoint logs laptop -n 100 -f
    Example: funcx-endpoint logs site --child alice-0123456789ab
    """
    import time

    from endpoint.paths import EndpointDir

    _existing(name)
    path = EndpointDir(name).log_file
    if child:
        from endpoint.multiuser.parent import CHILD_LOG_DIR
        from endpoint.paths import NAME_RE

        if not NAME_RE.match(child):
            _fail(f"invalid child name {child!r}", USAGE)
        path = EndpointDir(name).path / CHILD_LOG_DIR / f"{child}.log"
    if not path.exists():
        _fail(f"no log at {path}", NOT_FOUND)
    from endpoint.multiuser.log_text import printable  # a child's log is its user's bytes

    show = printable if child else str
    with open(path, errors="replace") as f:
        sys.stdout.write("".join(show(x) for x in f.readlines()[-lines:]))
        sys.stdout.flush()
        while follow:
            line = f.readline()
            if line:
                sys.stdout.write(show(line))
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
    from funcx.errors import FuncxAPIError, FuncxError

    ep = _existing(name)
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
            _fail(f"cannot reach the service to delete {eid}: {e}", UNREACHABLE)
    shutil.rmtree(ep.path)
    typer.echo(f"Deleted endpoint {name}" + (f" ({eid})" if eid else ""))


if __name__ == "__main__":
    app()
