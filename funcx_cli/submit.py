"""``funcx run`` and ``funcx map``: the commands that submit.

Never lose a result: data (results) go to stdout, everything else (the task or
group id, progress, warnings, how to resume) to stderr, whatever is a terminal.
The id is printed before the command waits; Ctrl-C (exit 130) or ``--timeout``
(exit 6) leave the tasks running and say how to fetch them later
(``funcx task result ID``, ``funcx map --resume GROUP``)."""
from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from funcx.sdk.render import error_text
from funcx_cli.arguments import parse_kwargs, parse_lines, parse_value
from funcx_cli.context import (
    FormatOption,
    check_format,
    client,
    console,
    jsonable,
    print_json,
)
from funcx_cli.errors import FAILED, INTERRUPTED, PENDING, TERMINATED, USAGE, fail
from funcx_cli.shell_output import report_shell, shell_fields


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, a batch job's end), handled as Ctrl-C is."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def stop_code(e: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return TERMINATED if isinstance(e, Terminated) else INTERRUPTED


def catch_sigterm() -> None:
    """From now on SIGTERM stops the wait as Ctrl-C does (with the resume hint)."""
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)


def say(message: str) -> None:
    """A message for the person at the terminal: always stderr."""
    typer.echo(message, err=True)


def _warn_if_offline(fxc: Any, eid: str, endpoint: str, resume: str) -> None:
    """Say at once that an endpoint is offline (instead of a blank wait)."""
    try:
        st = fxc.get_endpoint_status(eid)["status"]
    except Exception:  # noqa: BLE001 - only a hint: never stop the command for it
        return
    if st != "online":
        say(f"Warning: endpoint {endpoint} is {st}: the tasks wait until it is started "
            f"(funcx-endpoint start on its host). Stop waiting with Ctrl-C; "
            f"fetch the results later with: {resume}")


def run_command(function: str = typer.Argument(None, help="function id or name (not with "
                                                          "--shell)"),
                args: list[str] = typer.Argument(
                    None, help="arguments: JSON where they parse, else strings; text starting "
                               "with [ { or \" must be valid JSON"),
                endpoint: str = typer.Option(..., "--endpoint", "-e", help="endpoint id or name"),
                kwargs: str = typer.Option(None, "--kwargs",
                                           help="keyword arguments as a JSON object"),
                no_wait: bool = typer.Option(False, "--no-wait",
                                             help="print the task id and return"),
                timeout: float = typer.Option(None, help="seconds to wait for the result "
                                                         "(then exit 6; the task goes on)"),
                shell: str = typer.Option(
                    None, "--shell", metavar="CMD",
                    help="run a shell command (a ShellFunction): {name} fields are filled "
                         "from --kwargs; prints its stdout/stderr and exits with its status"),
                walltime: float = typer.Option(
                    None, "--walltime", help="with --shell: seconds before the command is "
                                             "killed (exit 124)"),
                fmt: str = FormatOption) -> None:
    """Run a function on an endpoint and print its result (or the remote traceback).

    The task id goes to stderr before it waits; Ctrl-C (exit 130) and --timeout
    (exit 6) leave the task running and print `funcx task result ID` to fetch it.

    Example: funcx run fit --endpoint laptop 3 '[1, 2]' --kwargs '{"order": 2}'

    Shell: funcx run --shell 'echo {msg} > out.txt; wc -c out.txt' -e laptop --kwargs '{"msg": "hi"}'
    """
    fmt = check_format(fmt)
    kw = parse_kwargs(kwargs)
    values = [parse_value(a) for a in args or []]
    if shell is not None and (function is not None or values):
        fail("with --shell, give the command's arguments with --kwargs '{\"name\": value}' "
             "(no function and no positional arguments)", USAGE)
    if shell is None and function is None:
        fail("give a function id or name, or --shell CMD", USAGE)
    if walltime is not None and shell is None:
        fail("--walltime goes with --shell (a Python function's walltime is the endpoint's)",
             USAGE)
    fxc = client()
    if shell is not None:
        from funcx.sdk.shell_function import ShellCommandError, ShellFunction

        try:
            function = fxc.register_function(ShellFunction(shell, walltime=walltime))
        except ShellCommandError as e:
            fail(str(e), USAGE)
    fid, eid = fxc.resolve_function(function), fxc.resolve_endpoint(endpoint)
    catch_sigterm()
    tid = fxc.run(*values, endpoint_id=eid, function_id=fid, **kw)
    if no_wait:
        print_json({"task_id": tid}) if fmt == "json" else typer.echo(tid)
        return
    resume = f"funcx task result {tid} --wait"
    from funcx.errors import TaskPending

    try:
        say(f"task {tid} submitted to {endpoint}; waiting for its result")
        _warn_if_offline(fxc, eid, endpoint, resume)
        st = fxc.wait([tid], timeout=timeout)[tid]
    except TaskPending:
        say(f"Still pending after {timeout:g} s; the task goes on. Fetch it later with: {resume}")
        raise typer.Exit(PENDING) from None
    except KeyboardInterrupt as e:
        say(f"\nInterrupted; the task goes on. Fetch it later with: {resume}")
        raise typer.Exit(stop_code(e)) from None
    report(tid, st, fmt)


def report(tid: str, st: dict, fmt: str) -> None:
    """One finished task: its result on stdout, or its traceback on stderr (exit 1)."""
    if "exception" in st:
        text = error_text(st["exception"])
        if fmt == "json":
            print_json({"task_id": tid, "status": st["status"], "exception": text})
        else:
            say(text)
        raise typer.Exit(FAILED)
    shell = shell_fields(st["result"])
    if shell is not None:  # a shell function's result: its streams and exit status
        report_shell(tid, st["status"], shell, fmt)
    elif fmt == "json":
        print_json({"task_id": tid, "status": st["status"], "result": st["result"]})
    else:
        print_result(st["result"])


def print_result(value: Any) -> None:
    """A result as text: strings as they are, anything else as JSON."""
    typer.echo(value if isinstance(value, str) else json.dumps(jsonable(value)))


def map_command(
        function: str = typer.Argument(None, help="function id or name (not with --resume)"),
        endpoint: str = typer.Option(None, "--endpoint", "-e", help="endpoint id or name"),
        input_file: Path = typer.Option(
            None, "--input", "-i", help="one task per line: a JSON argument list, a single "
                                        "JSON argument, or {\"args\": [...], \"kwargs\": {...}} "
                                        "('-': stdin)"),
        resume: str = typer.Option(None, "--resume", metavar="GROUP",
                                   help="re-attach to the task group of an earlier map"),
        start: int = typer.Option(0, "--from", metavar="INDEX",
                                  help="with --resume: skip the results before this index"),
        timeout: float = typer.Option(None, help="seconds to wait for all results "
                                                 "(then exit 6; the tasks go on)")) -> None:
    """Run a function once per input line; print results as JSON lines, in input order.

    Each line is one task: `[1, 2]` (arguments), `3` (one argument), or
    `{"args": [1], "kwargs": {"order": 2}}` (an object with only args/kwargs
    keys; wrap a dict argument of that shape in a list).  The group id goes to
    stderr first; Ctrl-C (exit 130) or --timeout (exit 6) leave the tasks
    running: `funcx map --resume GROUP` prints their results later.

    Example: funcx map fit --endpoint laptop --input params.jsonl > results.jsonl
    """
    fxc = client()
    catch_sigterm()
    if resume:
        if function or endpoint or input_file:
            fail("--resume GROUP takes no function, --endpoint or --input", USAGE)
        try:
            tg = str(uuid.UUID(resume))
        except ValueError:
            fail(f"--resume needs a task group id, not {resume!r}", USAGE)
        tids = [t["id"] for t in fxc.get_taskgroup_tasks(tg)]  # every task, in input order
        say(f"task group {tg}: {len(tids)} task(s)")
    else:
        if not function or not endpoint or input_file is None:
            fail("give FUNCTION, --endpoint and --input (or --resume GROUP)", USAGE)
        calls = _read_calls(input_file)
        fid, eid = fxc.resolve_function(function), fxc.resolve_endpoint(endpoint)
        tg = str(uuid.uuid4())
        batch = fxc.create_batch(task_group_id=tg)
        for a, kw in calls:
            batch.add(*a, endpoint_id=eid, function_id=fid, **kw)
        tids = []
    from funcx.errors import TaskPending

    total = len(tids) if resume else len(calls)
    written = [0]  # results printed so far (skipped ones included), for the resume hint
    try:
        if not resume:
            # the group id first: even a submit cut short leaves a group to resume
            say(f"task group {tg}: submitting {total} task(s) to {endpoint}")
            tids = fxc.batch_run(batch)
            _warn_if_offline(fxc, eid, endpoint, f"funcx map --resume {tg}")
        failed = _print_in_order(fxc, tg, tids, start, timeout, written)
    except (TaskPending, KeyboardInterrupt) as e:
        pending = isinstance(e, TaskPending)
        say(("" if pending else "\n") + (f"Still waiting after {timeout:g} s" if pending
                                         else "Interrupted")
            + f": {written[0]} of {total} result(s) written; the tasks go on. "
            f"Print the rest with: funcx map --resume {tg} --from {written[0]}")
        raise typer.Exit(PENDING if isinstance(e, TaskPending) else stop_code(e)) from None
    if failed:
        say(f"{failed} of {total} task(s) failed")
        raise typer.Exit(FAILED)


def _read_calls(input_file: Path) -> list[tuple[list[Any], dict[str, Any]]]:
    if str(input_file) != "-" and not input_file.is_file():
        fail(f"no such file {input_file}", USAGE)
    with (sys.stdin if str(input_file) == "-" else input_file.open()) as f:
        return parse_lines(f.read().splitlines(), str(input_file))


def _print_in_order(fxc: Any, tg: str, tids: list[str], start: int,
                    timeout: float | None, written: list[int]) -> int:
    """Write one JSON line per task from index ``start``, in input order, as
    results arrive (``written[0]``: how far it got), with a progress bar on
    stderr; return how many failed.  ``TaskPending`` once ``timeout`` passes."""
    from rich.progress import Progress

    failed = 0
    err = console(stderr=True)
    progress = Progress(console=err, transient=True, disable=not err.is_terminal,
                        redirect_stdout=False, redirect_stderr=False)
    with progress:
        bar = progress.add_task("tasks", total=len(tids))
        for i, st, done in follow_in_order(fxc, tg, tids, timeout):
            progress.update(bar, completed=done)
            if i < 0:
                continue
            if i >= start:
                row: dict[str, Any] = {"index": i, "task_id": tids[i], "status": st["status"]}
                if "exception" in st or st["status"] != "success":
                    failed += 1
                    exc = st.get("exception")
                    row["exception"] = error_text(exc) if exc is not None else \
                        str(st.get("reason") or st["status"])
                else:
                    row["result"] = jsonable(st["result"])
                sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()
            written[0] = i + 1
    return failed


def follow_in_order(fxc: Any, tg: str, tids: list[str],
                    timeout: float | None) -> Iterator[tuple[int, dict, int]]:
    """``(index, status, finished so far)`` of each task in input order, as
    soon as it and all before it have finished, and ``(-1, {}, finished so
    far)`` when only later tasks finished (for a progress bar).  Waits on the
    group's completion events (push, long-poll), fetching only the tasks they
    name; raises ``TaskPending`` once ``timeout`` s have passed."""
    from funcx.defaults import setting
    from funcx.errors import TaskPending

    deadline = None if timeout is None else time.monotonic() + timeout
    done: dict[str, dict] = {}
    position = {t: i for i, t in enumerate(tids)}

    def absorb(ids: list[str]) -> None:
        most = int(setting("BATCH_STATUS_MAX"))
        for s in range(0, len(ids), most):
            for t, st in fxc.get_batch_result(ids[s:s + most]).items():
                if not st["pending"]:
                    done[t] = st

    path = f"/v2/taskgroup/{tg}/events"
    after = fxc.web_client.get(path, params={"after": "$"}, throttle=False)["last_id"]
    absorb(list(tids))  # after marking the stream's end: no completion is missed
    nxt = 0
    while True:
        # every task in ``done`` comes after ``nxt``: the earlier ones were yielded
        if nxt < len(tids) and tids[nxt] not in done:
            yield -1, {}, nxt + len(done)
        while nxt < len(tids) and tids[nxt] in done:
            st = done.pop(tids[nxt])
            yield nxt, st, nxt + 1 + len(done)
            nxt += 1
        if nxt >= len(tids):
            return
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TaskPending(f"{len(tids) - nxt} task(s) still pending after {timeout}s")
        wait_s = 20.0 if left is None else max(0.1, min(20.0, left))
        resp = fxc.web_client.get(path, params={"after": after, "timeout": wait_s},
                                  timeout=wait_s + 30, throttle=False)
        after = resp["last_id"]
        named = [d["task_id"] for d in resp.get("tasks", [])
                 if d.get("task_id") in position and d["task_id"] not in done
                 and position[d["task_id"]] >= nxt]
        if named:
            absorb(named)
