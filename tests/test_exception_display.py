"""A failed task is shown one way everywhere (funcx.sdk.render): what it
printed, then its remote traceback once, with source lines — in a notebook
(IPython's display of ``future.result()``), in a plain script's traceback,
and in the HTML reprs; never ``ValueError: ValueError: …``, never the local
plumbing frames (concurrent.futures, funcX's own) in a notebook."""
from __future__ import annotations

import linecache
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from funcx import FuncXExecutor
from funcx.errors import TaskExecutionFailed
from funcx.sdk.render import (
    attach_display,
    error_summary,
    error_text,
    exception_lines,
    fill_source,
)
from funcx.sdk.reprs import exception_html, task_html
from funcx.sdk.results import rebuild_exception
from funcx.serialize import FuncXSerializer

REPO = Path(__file__).resolve().parent.parent


def remote_tb(path: str, line: int, source: str | None = None) -> str:
    src = f"    {source}\n" if source else ""
    return ("Traceback (most recent call last):\n"
            f'  File "{path}", line {line}, in noisy\n{src}'
            "ValueError: too noisy\n")


# ---------------------------------------------------------------- pure rendering
def test_fill_source_adds_lines_only_where_missing():
    cell = "<ipython-input-7-analysis>"  # as IPython caches a cell: in memory, no mtime
    source = "def noisy():\n    raise ValueError('too noisy')\n"
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
    try:
        lines = fill_source(remote_tb(cell, 2).splitlines())
        assert lines[1:3] == [f'  File "{cell}", line 2, in noisy', "    raise ValueError('too noisy')"]
        sent = fill_source(remote_tb(cell, 2, "raise ValueError('as the endpoint has it')")
                           .splitlines())
        assert sent.count("    raise ValueError('as the endpoint has it')") == 1 and len(sent) == 4
        assert fill_source(remote_tb(cell, 99).splitlines()) == remote_tb(cell, 99).splitlines()
    finally:
        linecache.cache.pop(cell, None)
    assert fill_source(remote_tb("/nowhere/x.py", 2).splitlines()) == \
        remote_tb("/nowhere/x.py", 2).splitlines()


def test_fill_source_never_reads_files_named_by_the_endpoint(tmp_path):
    """The traceback's paths come from the endpoint: a local file it names is
    never opened — not a secret, not a FIFO (which would block forever), not a
    big file — even one this process has cached from disk."""
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:SECRET-LINE\n")
    big = tmp_path / "big.log"
    with big.open("w") as f:
        f.write("BIG-FILE-LINE\n" * 200_000)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    linecache.getline(str(secret), 1)  # cached from disk: still not used
    tbs = [remote_tb(p, 1) for p in ("/etc/passwd", str(secret), str(big), str(fifo))]
    done: list[list[str]] = []
    worker = threading.Thread(target=lambda: done.extend(fill_source(t.splitlines()) for t in tbs),
                              daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "fill_source blocked on a FIFO named by the endpoint"
    assert done == [t.splitlines() for t in tbs]  # nothing added from any local file
    ser = FuncXSerializer()
    for t in tbs:  # nor in a rebuilt exception, its note or any display of it
        exc = rebuild_exception({"task_id": "t", "exception": t,
                                 "exception_data": ser.serialize(ValueError("x"))}, ser)
        shown = "\n".join([*getattr(exc, "__notes__", []), error_text(exc),
                           *exc._render_traceback_()])  # type: ignore[attr-defined]
        assert "root:" not in shown and "SECRET-LINE" not in shown and "BIG-FILE" not in shown
    linecache.checkcache(str(secret))


def test_source_lines_are_filled_at_display_time_not_when_rebuilt():
    """rebuild_exception (the executor's watcher thread, get_result) only
    keeps the text; the IPython display adds the cell's lines when shown."""
    cell = "<ipython-input-8-late>"
    ser = FuncXSerializer()
    exc = rebuild_exception({"task_id": "t9", "exception": remote_tb(cell, 2),
                             "exception_data": ser.serialize(ValueError("too noisy"))}, ser)
    assert "raise ValueError('cell line')" not in exc.__notes__[0]  # type: ignore[attr-defined]
    source = "def noisy():\n    raise ValueError('cell line')\n"
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
    try:
        shown = exc._render_traceback_()  # type: ignore[attr-defined]
    finally:
        linecache.cache.pop(cell, None)
    assert "    raise ValueError('cell line')" in shown


def test_summary_never_doubles_the_type():
    exc = ValueError("too noisy")
    exc.remote_traceback = remote_tb("/nowhere/x.py", 2)  # type: ignore[attr-defined]
    assert error_summary(exc) == "ValueError: too noisy"
    assert error_summary(KeyError("b")) == "KeyError: 'b'"
    assert error_summary(TaskExecutionFailed(remote_tb("/x.py", 1))) == "ValueError: too noisy"
    html = exception_html(exc)
    assert "ValueError: ValueError" not in html and html.count("ValueError: too noisy") == 2
    assert "Traceback (most recent call last)" in html  # the traceback, folded under the summary


def test_captured_output_comes_first_and_the_display_pickles():
    exc = ValueError("too noisy")
    exc.remote_traceback = remote_tb("/nowhere/x.py", 2)  # type: ignore[attr-defined]
    exc.stdout, exc.stderr = "step 1\nstep 2\n", b"warning: noisy\n"  # type: ignore[attr-defined]
    attach_display(exc, "task-1")
    lines = exc._render_traceback_()  # type: ignore[attr-defined]
    assert lines[0] == "\x1b[31mRemote traceback (from the endpoint, task task-1):\x1b[0m"
    assert lines[1:6] == ["--- the task's stdout ---", "step 1", "step 2",
                          "--- the task's stderr ---", "warning: noisy"]
    assert lines[-1] == "ValueError: too noisy" and lines.count("ValueError: too noisy") == 1
    back = pickle.loads(pickle.dumps(exc))  # an exception still crosses processes
    assert back.task_id == "task-1" and back._render_traceback_()[1] == "--- the task's stdout ---"
    assert "step 1" in task_html("Task", "task-1", "failed", exception=exc, done=True)


def test_rebuilt_exception_notes_and_fallback():
    ser = FuncXSerializer()
    text = remote_tb("/nowhere/x.py", 2, "raise ValueError('too noisy')")
    exc = rebuild_exception({"task_id": "t1", "exception": text,
                             "exception_data": ser.serialize(ValueError("too noisy"))}, ser)
    assert isinstance(exc, ValueError) and exc.task_id == "t1"  # type: ignore[attr-defined]
    notes = getattr(exc, "__notes__", [])
    assert len(notes) == 1 and "--- remote traceback (task t1) ---" in notes[0]
    assert notes[0].count("raise ValueError('too noisy')") == 1
    bare = rebuild_exception({"task_id": "t2", "exception": text}, ser)  # type not rebuildable
    assert isinstance(bare, TaskExecutionFailed) and not getattr(bare, "__notes__", None)
    assert exception_lines(bare)[-1] == "ValueError: too noisy"
    assert error_text(bare) == text.rstrip()


# ---------------------------------------------------------------- live, real tasks
@pytest.fixture(scope="module")
def shell(endpoint):
    return InteractiveShell.instance()


def test_future_result_in_a_notebook_shows_the_remote_traceback_once(shell, fxc, endpoint):
    with capture_output():
        assert shell.run_cell("def noisy(n):\n    print('tuning', n)\n"
                              "    raise ValueError('too noisy')\n").success
    shell.user_ns["ex"] = ex = FuncXExecutor(endpoint_id=endpoint, client=fxc)
    try:
        with capture_output():
            assert shell.run_cell("fut = ex.submit(noisy, 3)").success
        shell.user_ns["fut"].exception(timeout=60)
        with capture_output() as cap:
            res = shell.run_cell("fut.result()")
    finally:
        ex.shutdown(wait=False)
    assert isinstance(res.error_in_exec, ValueError)
    out = cap.stdout
    task_id = shell.user_ns["fut"].task_id
    assert f"Remote traceback (from the endpoint, task {task_id}):" in out
    # what the task printed, before its traceback
    assert out.index("--- the task's stdout ---\ntuning 3\n") < out.index("Traceback (most")
    assert "raise ValueError('too noisy')" in out  # the cell's line, filled in on this side
    assert out.count("ValueError: too noisy") == 1 and "ValueError: ValueError" not in out
    for plumbing in ("concurrent", "_base.py", "executor.py", "funcx/"):
        assert plumbing not in out, plumbing


def test_future_result_in_a_script_shows_the_remote_frames_with_source(endpoint, tmp_path):
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from funcx import FuncXExecutor

        def noisy(n):
            raise ValueError(f"too noisy at {{n}}")

        with FuncXExecutor(endpoint_id={endpoint!r}) as ex:
            ex.submit(noisy, 7).result(timeout=60)
        """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ), cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr
    assert 'raise ValueError(f"too noisy at {n}")' in err and ", in noisy" in err
    assert err.count("ValueError: too noisy at 7") == 2  # the exception line, and the remote one
    assert err.count("Traceback (most recent call last)") == 2  # the local one, then the remote
    assert err.count(', in noisy') == 1  # the remote frame, once
    assert "ValueError: ValueError" not in err
