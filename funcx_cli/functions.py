"""``funcx function register|list|show|search|delete``."""
from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from pathlib import Path

import typer

from funcx_cli.context import (
    FormatOption,
    check_format,
    client,
    console,
    handles_errors,
    print_document,
    print_json,
    table,
)
from funcx_cli.errors import USAGE, fail

app = typer.Typer(help="Register and find functions.\n\n"
                       "Example: funcx function register analysis.py:fit", no_args_is_help=True)


def load_function(spec: str):
    """``path/to/file.py:func`` or ``package.module:func`` -> the function."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        fail(f"expected PATH:FUNCTION or MODULE:FUNCTION, got {spec!r}", USAGE)
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        if not path.exists():
            fail(f"no such file {path}", USAGE)
        mod_name = f"funcx_user_{path.stem}"
        mod_spec = importlib.util.spec_from_file_location(mod_name, path)
        if mod_spec is None or mod_spec.loader is None:
            fail(f"cannot load {path} as a Python module", USAGE)
            return
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_name] = module  # so inspect can find the source
        mod_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    fn = getattr(module, name, None)
    if not callable(fn):
        fail(f"{target} has no function {name!r}", USAGE)
    return fn


@app.command()
@handles_errors
def register(spec: str = typer.Argument(..., metavar="PATH:FUNC", help="file or module, and function"),
             name: str = typer.Option(None, help="function name [default: its __name__]"),
             description: str = typer.Option(None, help="description [default: its docstring]"),
             public: bool = typer.Option(False, help="anyone may run it"),
             group: str = typer.Option(None, help="group id whose members may run it"),
             fmt: str = FormatOption) -> None:
    """Register a Python function; prints its function id.

    The same content again prints the same id; new code under a name you
    already use is that name's next version (the name then means it).

    Example: funcx function register analysis.py:fit --description "fit a curve"
    """
    fmt = check_format(fmt)
    fn = load_function(spec)
    from funcx.sdk.remote_globals import MissingGlobalWarning  # lazy: --help stays quick

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MissingGlobalWarning)
        info = client().register_function_info(fn, function_name=name, description=description,
                                               public=public, group=group)
    for w in caught:  # one line on stderr each, not a warnings traceback
        if issubclass(w.category, MissingGlobalWarning):
            typer.echo(f"Warning: {w.message}", err=True)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    fid = info["function_uuid"]
    if fmt == "json":
        print_json({"function_id": fid, "function_name": info["function_name"],
                    "version": info["version"], "reused": info["reused"]})
    else:
        typer.echo(fid)


def _version(hit: dict) -> str:
    """``2 (latest)``: the n-th registration of its name (``-``: from before versions)."""
    v = hit.get("version")
    if v is None:
        return "-"
    return f"{v} (latest)" if hit.get("latest") else str(v)


COLUMNS = ["Name", "Version", "Function ID", "Description", "Public"]


def _rows(hits):
    return [[h["function_name"], _version(h), h["function_uuid"],
             (h.get("description") or "")[:50], "yes" if h.get("public") else "no"] for h in hits]


@app.command("list")
@handles_errors
def list_(limit: int = typer.Option(100, help="at most this many"), fmt: str = FormatOption) -> None:
    """List your functions, newest first: every version, the latest marked.

    Example: funcx function list --format json
    """
    fmt = check_format(fmt)
    hits = client().list_functions(limit=limit)  # searchable=False ones too: they are yours
    if fmt == "json":
        print_json(list(hits))
    else:
        console().print(table(None, COLUMNS, _rows(hits), no_wrap=("Function ID",)))


@app.command()
@handles_errors
def search(query: str, limit: int = typer.Option(10), offset: int = typer.Option(0),
           fmt: str = FormatOption) -> None:
    """Find functions you may run (yours and public ones) by name or description.

    Example: funcx function search fit
    """
    fmt = check_format(fmt)
    hits = client().search_function(query, offset=offset, limit=limit)
    if fmt == "json":
        print_json({"total": hits.total, "results": list(hits)})
    else:
        console().print(table(f"{len(hits)} of {hits.total}", COLUMNS, _rows(hits),
                              no_wrap=("Function ID",)))


@app.command()
@handles_errors
def show(function: str = typer.Argument(..., help="function id, name (its latest version) "
                                                   "or NAME@VERSION"),
         code: bool = typer.Option(False, "--code", help="include the serialized code"),
         fmt: str = FormatOption) -> None:
    """Show a function's metadata.

    Example: funcx function show fit
    """
    fmt = check_format(fmt)
    fxc = client()
    doc = fxc.get_function(fxc.resolve_function(function))
    if not code:
        doc.pop("function_code", None)
    print_document(doc, fmt)


@app.command()
@handles_errors
def delete(function: str = typer.Argument(..., help="function id, name (its latest version) "
                                                     "or NAME@VERSION")) -> None:
    """Delete one of your functions.

    Example: funcx function delete 3f2a...
    """
    fxc = client()
    fid = fxc.resolve_function(function)
    fxc.delete_function(fid)
    typer.echo(f"Deleted {fid}")
