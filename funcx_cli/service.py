"""``funcx service start|stop|status|logs``."""
from __future__ import annotations

import json

import typer

from funcx_cli.context import check_format
from funcx_cli.errors import fail

app = typer.Typer(help="Run the self-hosted funcX service on this machine.\n\n"
                       "Example: funcx service start --detach", no_args_is_help=True)


@app.command()
def start(host: str = typer.Option(None,
                                   help="address to listen on [default: 127.0.0.1, FUNCX_SERVICE_HOST]"),
          port: int = typer.Option(None, help="port (0: any free one) [default: 5000, FUNCX_SERVICE_PORT]"),
          detach: bool = typer.Option(False, "--detach", "-d", help="run in the background")) -> None:
    """Start Redis (embedded unless FUNCX_REDIS_URL is set), the web service, the
    result ingester and the RQ workers.

    Example: funcx service start --detach
    """
    from backend.supervisor import AlreadyRunning

    if detach:
        from backend.control import StartFailed, start_detached

        try:
            url = start_detached(host, port)
        except (AlreadyRunning, StartFailed) as e:
            fail(str(e))
        typer.echo(url)
        return
    from backend.supervisor import ComponentFailed, run
    from funcx.defaults import setting

    try:
        run(host or str(setting("SERVICE_HOST")),
            int(setting("SERVICE_PORT")) if port is None else port)
    except (AlreadyRunning, ComponentFailed) as e:
        fail(str(e))


@app.command()
def stop() -> None:
    """Stop the service of this FUNCX_HOME.

    Example: funcx service stop
    """
    from backend.control import stop as stop_service

    typer.echo("Stopped the funcX service" if stop_service() else "The funcX service was not running")


@app.command()
def status(fmt: str = typer.Option("text", "--format", help="text or json")) -> None:
    """Say whether the service runs, where, whether it answers, and each
    component (redis, web, ingester, rq-N) with pid, uptime and restarts.

    Example: funcx service status --format json
    """
    from backend.control import status as service_status

    fmt = check_format(fmt)
    st = service_status()
    if fmt == "json":
        typer.echo(json.dumps(st))
    elif st["running"]:
        typer.echo(f"running at {st['url']} (pid {st['pid']}, "
                   f"{'responding' if st['responding'] else 'NOT responding'}); logs in {st['logs']}")
        for c in st["components"]:
            if c.get("external"):
                typer.echo(f"  {c['name']:<10} external (FUNCX_REDIS_URL)")
                continue
            state = f"up {_duration(c['uptime_s'])}" if c["alive"] else "DOWN"
            typer.echo(f"  {c['name']:<10} pid {c['pid']!s:<8} {state:<14} restarts {c['restarts']}")
    else:
        typer.echo("not running")
    if not st["running"]:
        raise typer.Exit(1)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@app.command()
def logs(component: str = typer.Argument("web", help="web, ingester, rq-0, redis or supervisor"),
         lines: int = typer.Option(50, "-n", help="lines to show")) -> None:
    """Show the end of a service log.

    Example: funcx service logs ingester -n 20
    """
    from backend.supervisor import logs_dir

    path = logs_dir() / f"{component}.log"
    if not path.exists():
        fail(f"no log {path}", 3)
    typer.echo("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
