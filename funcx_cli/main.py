"""``funcx``: the command line, a thin layer over the SDK.  Heavy modules are
imported inside commands, so ``funcx --help`` starts fast."""
from __future__ import annotations

import typer

from funcx_cli import admin, auth, endpoints, functions, groups, service, submit, tasks
from funcx_cli.context import STATE, handles_errors
from funcx_cli.errors import EXIT_CODES
from funcx_cli.version import show_version

app = typer.Typer(help="funcX: run Python functions on any endpoint you may use.\n\n"
                       "Example: funcx run my_function --endpoint laptop 1 2\n\n"
                       "Exit codes: " + "; ".join(f"{c} {m}" for c, m in EXIT_CODES.items()),
                  no_args_is_help=True, pretty_exceptions_show_locals=False)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="show tracebacks of errors"),
         service_url: str = typer.Option(None, "--service", envvar="FUNCX_SERVICE_ADDRESS",
                                         help="service URL [default: the local service]"),
         version: bool = typer.Option(False, "--version", is_eager=True,
                                      callback=lambda v: show_version("funcx", v),
                                      help="print the version and exit")) -> None:
    STATE["debug"] = debug
    STATE["service"] = service_url


app.add_typer(service.app, name="service")
app.add_typer(functions.app, name="function")
app.add_typer(tasks.app, name="task")
app.add_typer(endpoints.app, name="endpoint")
app.add_typer(groups.app, name="group")
app.add_typer(admin.app, name="admin")
app.command()(auth.login)
app.command()(auth.logout)
app.command()(auth.whoami)
app.command("run")(handles_errors(submit.run_command))
app.command("map")(handles_errors(submit.map_command))



@app.command()
@handles_errors
def demo(keep_running: bool = typer.Option(False, "--keep-running",
                                           help="leave the service and endpoint running"),
         name: str = typer.Option("scientist", help="argument passed to the demo function")) -> None:
    """Start the service and a local endpoint, run a function, print its result.

    Example: funcx demo --keep-running
    """
    from funcx_cli.demo import run_demo

    run_demo(typer.echo, keep_running=keep_running, name=name)


if __name__ == "__main__":
    app()
