"""``funcx task status|result|cancel|list|watch|logs``.  Every command that
takes task ids also takes unambiguous prefixes of them (the short ids that
``funcx task list`` shows)."""
from __future__ import annotations

import time
from typing import Any

import typer

from funcx.sdk.cancel import cancel_answers
from funcx.sdk.render import error_text
from funcx_cli.context import (
    FormatOption,
    check_format,
    client,
    console,
    handles_errors,
    jsonable,
    print_json,
    styled_status,
    table,
    when,
)
from funcx_cli.errors import FAILED, INTERRUPTED, PENDING
from funcx_cli.ids import resolve_task_ids
from funcx_cli.listing import Names, display_row, summarize, unique_prefix_length
from funcx_cli.submit import print_result, say

app = typer.Typer(help="Inspect, fetch and cancel tasks.\n\n"
                       "Example: funcx task result 0b7e... --wait", no_args_is_help=True)

IdsArgument = typer.Argument(..., help="task ids (or unambiguous prefixes, as task list shows)")


@app.command()
@handles_errors
def status(task_ids: list[str] = IdsArgument, fmt: str = FormatOption) -> None:
    """Show the status of tasks (and each run of a retried task: Attempts).

    Example: funcx task status 0b7e1f2a 5c1d...
    """
    fmt = check_format(fmt)
    fxc = client()
    docs = fxc.get_batch_result(resolve_task_ids(fxc, task_ids))
    rows = [{"task_id": t, "status": d["status"], "completion_t": d.get("completion_t")}
            for t, d in docs.items()]
    for r, d in zip(rows, docs.values()):
        if d.get("attempts"):  # a retried task's runs (README "Retries")
            r["attempts"] = d["attempts"]
    if fmt == "json":
        print_json(rows)
    else:
        retried = any("attempts" in r for r in rows)
        console().print(table(None, ["Task ID", "Status", "Completed",
                                     *(["Attempts"] if retried else [])],
                              [[r["task_id"], styled_status(r["status"]), when(r["completion_t"]),
                                *([attempts_text(r.get("attempts"))] if retried else [])]
                               for r in rows], no_wrap=("Task ID",)))


def attempts_text(attempts: list[dict] | None) -> str:
    """``3: OSError, OSError, success`` — how many runs, and how each ended."""
    if not attempts:
        return ""
    ends = [str(a.get("error_type") or a.get("status") or "?") for a in attempts]
    return f"{attempts[-1].get('n', len(attempts))}: " + ", ".join(ends)


@app.command()
@handles_errors
def result(task_ids: list[str] = IdsArgument,
           wait: bool = typer.Option(False, "--wait", help="wait for pending tasks"),
           timeout: float = typer.Option(None, help="with --wait: seconds (then exit 6)"),
           fmt: str = FormatOption) -> None:
    """Print task results (remote tracebacks on stderr; exit 1 if any failed or is pending).

    Example: funcx task result 0b7e... --wait
    """
    from funcx.errors import TaskPending

    fmt = check_format(fmt)
    fxc = client()
    ids = resolve_task_ids(fxc, task_ids)
    try:
        docs = fxc.wait(ids, timeout=timeout) if wait else fxc.get_batch_result(ids)
    except TaskPending as e:
        say(f"{e}; ask again later: funcx task result {' '.join(ids)} --wait")
        raise typer.Exit(PENDING) from None
    except KeyboardInterrupt:
        say(f"\nInterrupted; ask again later: funcx task result {' '.join(ids)} --wait")
        raise typer.Exit(INTERRUPTED) from None
    bad = 0
    out = []
    for tid, st in docs.items():
        if st["pending"]:
            bad += 1
            out.append({"task_id": tid, "status": st["status"]})
            if fmt != "json":
                say(f"{tid}: still {st['status']}")
        elif "exception" in st:
            bad += 1
            out.append({"task_id": tid, "status": st["status"],
                        "exception": error_text(st["exception"])})
            if fmt != "json":
                say(f"{tid}: {error_text(st['exception'])}")
        else:
            out.append({"task_id": tid, "status": st["status"], "result": jsonable(st["result"])})
            if fmt != "json":
                print_result(st["result"])
    if fmt == "json":
        print_json(out)
    if bad:
        raise typer.Exit(FAILED)


@app.command()
@handles_errors
def cancel(task_ids: list[str] = IdsArgument, fmt: str = FormatOption) -> None:
    """Cancel tasks that have not finished (exit 1 if any had finished already).

    Any number of ids, sent in batches (one request per 10,000).

    Example: funcx task cancel 0b7e1f2a
    """
    fmt = check_format(fmt)
    fxc = client()
    answers = cancel_answers(fxc, resolve_task_ids(fxc, task_ids))
    rows = [{"task_id": tid, "cancelled": bool(a.get("cancelled")), "status": a.get("status")}
            for tid, a in answers.items()]
    if fmt == "json":
        print_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['task_id']}: " + (
                "cancelled" if r["cancelled"] else "not found" if r["status"] == "unknown"
                else f"not cancelled (it had finished: {r['status']})"))
    if sum(not r["cancelled"] for r in rows):
        raise typer.Exit(FAILED)


@app.command()
@handles_errors
def logs(task_id: str = typer.Argument(..., help="task id (or an unambiguous prefix)"),
         fmt: str = FormatOption) -> None:
    """Print what a task printed: its stdout on stdout, its stderr on stderr.

    Output is captured on the worker (bounded; a cut is marked in the text) and
    kept with the result, so it is there once the task has finished (exit 6
    while it is still pending).

    Example: funcx task logs 0b7e1f2a > task-output.txt
    """
    fmt = check_format(fmt)
    fxc = client()
    [tid] = resolve_task_ids(fxc, [task_id])
    doc = fxc.web_client.get(f"/v2/tasks/{tid}")  # the raw document: no result decoding
    out = {s: v if isinstance(v := doc.get(s), str) else "" for s in ("stdout", "stderr")}
    pending = doc.get("status") not in ("success", "failed", "cancelled")
    if fmt == "json":
        print_json({"task_id": tid, "status": doc.get("status"), **out})
    else:
        if out["stdout"]:
            typer.echo(out["stdout"], nl=not out["stdout"].endswith("\n"))
        if out["stderr"]:
            typer.echo(out["stderr"], nl=not out["stderr"].endswith("\n"), err=True)
        if pending:
            say(f"task {tid} is still {doc.get('status')}: its output is kept when it finishes")
        elif not out["stdout"] and not out["stderr"]:
            say(f"task {tid} ({doc.get('status')}) printed nothing")
    if pending:
        raise typer.Exit(PENDING)


def _names(fxc: Any, rows: list[dict]) -> Names:
    """Function and endpoint names for the ids in ``rows`` (a few requests;
    a function you may not read keeps its short id)."""
    endpoints = {e["uuid"]: e.get("name") or e.get("display_name") or ""
                 for e in fxc.get_endpoints(role="any")}
    functions = {h["function_uuid"]: h["function_name"] for h in fxc.list_functions(limit=1000)}
    missing = {r.get("function_id") for r in rows} - set(functions) - {None, ""}
    for fid in list(missing)[:20]:
        try:
            functions[fid] = fxc.get_function(fid).get("function_name") or ""
        except Exception:  # noqa: BLE001 - a name is a nicety: show the id instead
            pass
    return Names(functions=functions, endpoints=endpoints)


LIST_COLUMNS = ["ID", "Function", "Endpoint", "State", "Submitted", "Queued", "Run", "Error"]


@app.command("list")
@handles_errors
def list_(group: str = typer.Option(None, "--group", "-g", help="task group id"),
          status_: str = typer.Option(None, "--status", help="only tasks in this status"),
          limit: int = typer.Option(50, help="at most this many"), fmt: str = FormatOption) -> None:
    """List your recent tasks, newest first, like sacct: short id, function and
    endpoint names, state, submit time, time queued and run, error type.

    Short ids are accepted back by every command that takes a task id.
    Queued runs from submit to the worker's start (still counting while the
    task waits); Run is the function's own time.

    Example: funcx task list --status failed
    """
    fmt = check_format(fmt)
    fxc = client()
    rows = fxc.list_tasks(task_group_id=group, status=status_, limit=limit)
    names = _names(fxc, rows)
    if fmt == "json":
        print_json([{**r, "function_name": names.function(r.get("function_id")),
                     "endpoint_name": names.endpoint(r.get("endpoint_id"))} for r in rows])
        return
    now = time.time()
    n = unique_prefix_length([r["task_id"] for r in rows])
    shown = [display_row(r, names, now, n) for r in rows]
    console().print(table(None, LIST_COLUMNS,
                          [[d["id"], d["function"], d["endpoint"], styled_status(d["state"]),
                            d["submitted"], d["queued"], d["run"], d["error"]] for d in shown],
                          no_wrap=tuple(LIST_COLUMNS)))


@app.command()
@handles_errors
def watch(group: str = typer.Argument(..., help="task group id"),
          exit_status: bool = typer.Option(True, "--exit-status/--no-exit-status",
                                           help="exit 1 when any task failed or was cancelled"),
          timeout: float = typer.Option(None, help="seconds to watch (then exit 6)")) -> None:
    """Follow a task group until every task has finished: counts per state,
    failures grouped by error type and message.  The final summary goes to
    stdout; exit 1 if any task failed (as `gh run watch --exit-status`), 6 on
    --timeout, 130 on Ctrl-C.

    Example: funcx task watch 7a3c...
    """
    from rich.live import Live

    fxc = client()
    deadline = None if timeout is None else time.monotonic() + timeout
    path = f"/v2/taskgroup/{group}/events"
    rows = fxc.list_tasks(task_group_id=group, limit=100_000)  # 404 (exit 3) if unknown
    after = fxc.web_client.get(path, params={"after": "$"}, throttle=False)["last_id"]
    rows = fxc.list_tasks(task_group_id=group, limit=100_000)  # after marking the stream end
    summary = summarize(rows)
    live = Live(_render(group, summary), console=console(stderr=True), transient=True,
                redirect_stdout=False, redirect_stderr=False, refresh_per_second=4)
    try:
        with live:
            while summary.done < summary.total:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    console().print(_render(group, summary))
                    say(f"Still running after {timeout:g} s; watch again with: "
                        f"funcx task watch {group}")
                    raise typer.Exit(PENDING)
                wait_s = 5.0 if left is None else max(0.1, min(5.0, left))
                after = fxc.web_client.get(path, params={"after": after, "timeout": wait_s},
                                           timeout=wait_s + 30, throttle=False)["last_id"]
                summary = summarize(fxc.list_tasks(task_group_id=group, limit=100_000))
                live.update(_render(group, summary))
    except KeyboardInterrupt:
        console().print(_render(group, summary))
        say(f"\nInterrupted; the tasks go on. Watch again with: funcx task watch {group}")
        raise typer.Exit(INTERRUPTED) from None
    console().print(_render(group, summary))
    if exit_status and summary.failed:
        raise typer.Exit(FAILED)


def _render(group: str, summary: Any):
    """The watch display: the headline, a count per state, the failures."""
    from rich.console import Group
    from rich.text import Text

    from funcx_cli.listing import ordered_states

    parts: list[Any] = [Text(f"task group {group}: {summary.headline()}")]
    counts = table(None, ["State", "Tasks"],
                   [[styled_status(s), summary.counts[s]] for s in ordered_states(summary.counts)])
    parts.append(counts)
    if summary.failures:
        parts.append(table("failures by error", ["Tasks", "Error", "Example task"],
                           [[n, err, tid] for err, n, tid in summary.failures],
                           no_wrap=("Example task",)))
    return Group(*parts)
