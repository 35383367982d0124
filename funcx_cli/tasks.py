"""``funcx run``, ``funcx map`` and ``funcx task status|result|cancel|list|watch``."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from funcx.sdk.render import error_text
from funcx_cli.context import (
    FormatOption,
    check_format,
    client,
    console,
    handles_errors,
    jsonable,
    parse_value,
    print_json,
    styled_status,
    table,
    when,
)
from funcx_cli.errors import FAILED, USAGE, fail

app = typer.Typer(help="Inspect, fetch and cancel tasks.\n\n"
                       "Example: funcx task result 0b7e... --wait", no_args_is_help=True)


def _print_result(value: Any) -> None:
    typer.echo(value if isinstance(value, str) else json.dumps(jsonable(value)))


@handles_errors
def run(function: str = typer.Argument(..., help="function id or name"),
        args: list[str] = typer.Argument(None, help="arguments: JSON where they parse, else strings"),
        endpoint: str = typer.Option(..., "--endpoint", "-e", help="endpoint id or name"),
        kwargs: str = typer.Option(None, "--kwargs", help="keyword arguments as a JSON object"),
        no_wait: bool = typer.Option(False, "--no-wait", help="print the task id and return"),
        timeout: float = typer.Option(None, help="seconds to wait for the result"),
        fmt: str = FormatOption) -> None:
    """Run a function on an endpoint and print its result (or the remote traceback).

    Example: funcx run fit --endpoint laptop 3 '[1, 2]' --kwargs '{"order": 2}'
    """
    fmt = check_format(fmt)
    kw = json.loads(kwargs) if kwargs else {}
    if not isinstance(kw, dict):
        fail("--kwargs must be a JSON object", USAGE)
    fxc = client()
    fid, eid = fxc.resolve_function(function), fxc.resolve_endpoint(endpoint)
    tid = fxc.run(*[parse_value(a) for a in args or []], endpoint_id=eid, function_id=fid, **kw)
    if no_wait:
        print_json({"task_id": tid}) if fmt == "json" else typer.echo(tid)
        return
    st = fxc.wait([tid], timeout=timeout)[tid]
    _report(tid, st, fmt)


def _report(tid: str, st: dict, fmt: str) -> None:
    if "exception" in st:
        text = error_text(st["exception"])
        if fmt == "json":
            print_json({"task_id": tid, "status": st["status"], "exception": text})
        else:
            typer.echo(text, err=True)
        raise typer.Exit(FAILED)
    if fmt == "json":
        print_json({"task_id": tid, "status": st["status"], "result": jsonable(st["result"])})
    else:
        _print_result(st["result"])


@handles_errors
def map_(function: str = typer.Argument(..., help="function id or name"),
         endpoint: str = typer.Option(..., "--endpoint", "-e", help="endpoint id or name"),
         input_file: Path = typer.Option(..., "--input", "-i",
                                         help="one JSON argument list per line ('-': stdin)")) -> None:
    """Run a function once per input line; print results as JSON lines, in input order.

    Example: funcx map fit --endpoint laptop --input params.jsonl > results.jsonl
    """
    from rich.progress import Progress

    from funcx.sdk.executor import FuncXExecutor

    if str(input_file) != "-" and not input_file.is_file():
        fail(f"no such file {input_file}", USAGE)
    lines = (sys.stdin if str(input_file) == "-" else input_file.open()).read().splitlines()
    calls = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            a = json.loads(line)
        except json.JSONDecodeError as e:
            fail(f"{input_file}:{n}: not JSON ({e.msg})", USAGE)
        calls.append(a if isinstance(a, list) else [a])
    fxc = client()
    fid, eid = fxc.resolve_function(function), fxc.resolve_endpoint(endpoint)
    failed = 0
    with FuncXExecutor(endpoint_id=eid, client=fxc) as ex, \
            Progress(console=console(stderr=True), transient=True) as progress:
        bar = progress.add_task("tasks", total=len(calls))
        futures = [ex.submit_to_registered_function(fid, tuple(c)) for c in calls]
        for f in futures:
            f.add_done_callback(lambda _f: progress.advance(bar))
        for i, f in enumerate(futures):
            exc = f.exception()
            row: dict[str, Any] = {"index": i, "task_id": f.task_id}
            if exc is None:
                row.update(status="success", result=jsonable(f.result()))
            else:
                failed += 1
                row.update(status="failed", exception=error_text(exc))
            sys.stdout.write(json.dumps(row) + "\n")
            sys.stdout.flush()
    if failed:
        typer.echo(f"{failed} of {len(calls)} task(s) failed", err=True)
        raise typer.Exit(FAILED)


@app.command()
@handles_errors
def status(task_ids: list[str] = typer.Argument(..., help="task ids"), fmt: str = FormatOption) -> None:
    """Show the status of tasks.

    Example: funcx task status 0b7e... 5c1d...
    """
    fmt = check_format(fmt)
    docs = client().get_batch_result(task_ids)
    rows = [{"task_id": t, "status": d["status"], "completion_t": d.get("completion_t")}
            for t, d in docs.items()]
    if fmt == "json":
        print_json(rows)
    else:
        console().print(table(None, ["Task ID", "Status", "Completed"],
                              [[r["task_id"], styled_status(r["status"]), when(r["completion_t"])]
                               for r in rows]))


@app.command()
@handles_errors
def result(task_ids: list[str] = typer.Argument(..., help="task ids"),
           wait: bool = typer.Option(False, "--wait", help="wait for pending tasks"),
           fmt: str = FormatOption) -> None:
    """Print task results (remote tracebacks on stderr; exit 1 if any failed or is pending).

    Example: funcx task result 0b7e... --wait
    """
    fmt = check_format(fmt)
    fxc = client()
    docs = fxc.wait(task_ids) if wait else fxc.get_batch_result(task_ids)
    bad = 0
    out = []
    for tid, st in docs.items():
        if st["pending"]:
            bad += 1
            out.append({"task_id": tid, "status": st["status"]})
            if fmt != "json":
                typer.echo(f"{tid}: still {st['status']}", err=True)
        elif "exception" in st:
            bad += 1
            out.append({"task_id": tid, "status": st["status"],
                        "exception": error_text(st["exception"])})
            if fmt != "json":
                typer.echo(f"{tid}: {error_text(st['exception'])}", err=True)
        else:
            out.append({"task_id": tid, "status": st["status"], "result": jsonable(st["result"])})
            if fmt != "json":
                _print_result(st["result"])
    if fmt == "json":
        print_json(out)
    if bad:
        raise typer.Exit(FAILED)


@app.command()
@handles_errors
def cancel(task_ids: list[str] = typer.Argument(..., help="task ids"),
           fmt: str = FormatOption) -> None:
    """Cancel tasks that have not started running (exit 1 if any could not be).

    Example: funcx task cancel 0b7e...
    """
    fmt = check_format(fmt)
    fxc = client()
    rows = [{"task_id": tid, "cancelled": fxc.cancel_task(tid)} for tid in task_ids]
    if fmt == "json":
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['task_id']}: " + ("cancelled" if r["cancelled"]
                                              else "not cancelled (already running or finished)"))
    missed = sum(not r["cancelled"] for r in rows)
    if missed:
        raise typer.Exit(FAILED)


@app.command("list")
@handles_errors
def list_(group: str = typer.Option(None, "--group", "-g", help="task group id"),
          status_: str = typer.Option(None, "--status", help="only tasks in this status"),
          limit: int = typer.Option(50, help="at most this many"), fmt: str = FormatOption) -> None:
    """List your recent tasks.

    Example: funcx task list --status failed
    """
    fmt = check_format(fmt)
    rows = client().list_tasks(task_group_id=group, status=status_, limit=limit)
    if fmt == "json":
        print_json(rows)
    else:
        console().print(table(None, ["Task ID", "Status", "Function", "Endpoint", "Created"],
                              [[r["task_id"], styled_status(r["status"]), r["function_id"],
                                r["endpoint_id"], when(r["created_at"])] for r in rows]))


@app.command()
@handles_errors
def watch(group: str = typer.Argument(..., help="task group id")) -> None:
    """A live table of a task group, updated as results arrive; ends when all are done.

    Example: funcx task watch 7a3c...
    """
    from rich.live import Live

    from funcx.sdk.progress import GroupProgress

    fxc = client()
    progress = GroupProgress.of(fxc, group)

    def render():
        return table(f"task group {group}: {progress.done}/{progress.total} done",
                     ["Task ID", "Status", "Completed"],
                     [[r["task_id"], styled_status(r["status"]), when(r.get("completion_t"))]
                      for r in progress.latest(20)])

    with Live(render(), console=console(), refresh_per_second=8) as live:
        if progress.all_done:
            return
        for _ in progress.follow(fxc, group):
            live.update(render())
            if progress.all_done:
                return
