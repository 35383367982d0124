"""``funcx service start|stop|status|logs|tls-init``."""
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
          detach: bool = typer.Option(False, "--detach", "-d", help="run in the background"),
          tls_cert: str = typer.Option(None, "--tls-cert",
                                       help="PEM certificate: serve HTTPS (and Redis over TLS "
                                            "off-host) [FUNCX_TLS_CERT; default: `funcx service "
                                            "tls-init`'s, when it made one]"),
          tls_key: str = typer.Option(None, "--tls-key", help="its private key [FUNCX_TLS_KEY]"),
          tls_ca: str = typer.Option(None, "--tls-ca",
                                     help="the CA that signs it, handed to endpoints "
                                          "[FUNCX_TLS_CA; default: tls-init's ca.pem]"),
          insecure: bool = typer.Option(None, "--insecure",
                                        help="serve clear text on a non-loopback address anyway "
                                             "(warned on every start) [FUNCX_INSECURE]")) -> None:
    """Start Redis (embedded unless FUNCX_REDIS_URL is set), the web service, the
    result ingester and the RQ workers.

    On 127.0.0.1 it serves http:// unless a certificate is given.  On any other
    address (0.0.0.0 included) it serves HTTPS with --tls-cert/--tls-key, or
    with the files `funcx service tls-init` wrote (used by default when they
    exist), and refuses clear text unless --insecure; its embedded Redis then
    runs Debian's TLS-capable redis-server and endpoints get rediss:// URLs.

    Example: funcx service start --host 0.0.0.0 --detach
    """
    from backend.supervisor import AlreadyRunning
    from backend.tls import TransportRefused, plan, resolve_tls
    from funcx.defaults import setting
    from funcx_cli.errors import USAGE

    bind = host or str(setting("SERVICE_HOST"))
    try:
        transport = plan(bind, resolve_tls(tls_cert, tls_key, tls_ca), insecure)
    except TransportRefused as e:
        fail(str(e), USAGE)
    if detach:
        if transport.warning:  # (in the foreground the supervisor logs it to stderr)
            typer.echo(transport.warning, err=True)
        from backend.control import StartFailed, start_detached

        try:
            url = start_detached(bind, port, transport=transport)
        except (AlreadyRunning, StartFailed) as e:
            fail(str(e))
        typer.echo(url)
        if transport.tls is not None and transport.tls.ca is not None:
            typer.echo(f"clients and endpoints verify it with {transport.tls.ca} "
                       "(FUNCX_CA_BUNDLE)", err=True)
        return
    from backend.supervisor import ComponentFailed, run

    try:
        run(bind, int(setting("SERVICE_PORT")) if port is None else port, transport)
    except (AlreadyRunning, ComponentFailed) as e:
        fail(str(e))


@app.command("tls-init")
def tls_init(hosts: list[str] = typer.Option(..., "--host",
                                             help="name or address clients use to reach this "
                                                  "host (repeat for several)")) -> None:
    """Make a private CA and a server certificate signed by it (for the hosts
    given, plus localhost and 127.0.0.1) under $FUNCX_HOME/service/tls/.
    `funcx service start` then serves HTTPS (and Redis over TLS) with them.
    An existing CA is kept, so clients' copies of ca.pem stay valid.

    Example: funcx service tls-init --host login.example.org --host 10.0.0.5
    """
    from backend.tls import init_tls

    files = init_tls(hosts)
    typer.echo(f"certificate: {files.cert}\nkey:         {files.key}\nCA:          {files.ca}")
    typer.echo(f"Clients (SDK, CLI, endpoints) on other hosts need a copy of {files.ca}: set "
               "FUNCX_CA_BUNDLE to its path there.  `funcx service start` uses these files "
               "from now on.")


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
        if st.get("insecure"):
            typer.echo("  WARNING: clear text off-host (--insecure)")
        if st.get("agent_redis_url"):
            typer.echo(f"  endpoints reach Redis at {st['agent_redis_url']}")
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
