"""``funcx``: the command line.  Heavy modules are imported inside commands so
``funcx --help`` starts fast."""
from __future__ import annotations

import typer

from funcx_cli import service

app = typer.Typer(help="funcX: run Python functions on any endpoint you may use.\n\n"
                       "Example: funcx demo",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
app.add_typer(service.app, name="service")


@app.command()
def demo(keep_running: bool = typer.Option(False, "--keep-running",
                                           help="leave the service and endpoint running"),
         name: str = typer.Option("scientist", help="argument passed to the demo function")) -> None:
    """Start the service and a local endpoint, run a function, print its result.

    Example: funcx demo --keep-running
    """
    from backend.demo import run_demo
    from funcx.errors import FuncxError
    from funcx_cli.errors import exit_code_for, fail

    try:
        run_demo(typer.echo, keep_running=keep_running, name=name)
    except FuncxError as e:
        fail(str(e), exit_code_for(e))
    except Exception as e:  # the remote function's own exception, a start failure...
        fail(f"{type(e).__name__}: {e}")


if __name__ == "__main__":
    app()
