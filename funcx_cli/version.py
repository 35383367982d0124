"""``--version`` of both command lines (``funcx``, ``funcx-endpoint``)."""
from __future__ import annotations

import typer


def show_version(program: str, value: bool) -> None:
    """Print ``PROGRAM VERSION (funcx-selfhosted, Python X.Y.Z)`` and exit 0
    (an eager option's callback: runs before any command)."""
    if value:
        import platform

        from funcx.version import __version__

        typer.echo(f"{program} {__version__} (funcx-selfhosted, Python "
                   f"{platform.python_version()})")
        raise typer.Exit(0)
