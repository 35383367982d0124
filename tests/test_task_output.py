"""Per-task output (issue 16, point 4): what a task writes to stdout and stderr
— ``print``, ``sys.stderr.write``, child processes, C code on fd 1/2 — is
captured by its worker, bounded with a marker where cut, stored with its
result and returned by the SDK (``get_task``, the task document, the
executor's futures, the exceptions it raises).

The first part runs the capture, the bounds and the message formats in this
process; the second runs tasks on the session's real endpoint (real service,
Redis, ingester, interchange, manager and worker processes).  Functions sent
from this module travel as source code: each one is self-contained.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import traceback
import uuid
from pathlib import Path

import pytest

from endpoint.execute import Executor
from endpoint.task_output import OutputCapture
from funcx.errors import TaskExecutionFailed
from funcx.protocol.messages import ProtocolError, Result, Task, pack_results, unpack, unpack_results
from funcx.protocol.output_limits import MARKER_PREFIX, cut_text, display_tail, fit, split
from funcx.protocol.streams import decode_result_entry, encode_results
from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
WAIT_S = 60
ENDPOINT_NAME = "pytest-ep"  # the session endpoint's name (conftest.ENDPOINT)


# ------------------------------------------------------------- remote functions
def chatty(tag):
    import os
    import sys

    print(f"print {tag}")
    sys.stdout.write(f"stdout.write {tag}\n")
    sys.stderr.write(f"stderr.write {tag}\n")
    os.system(f"echo child {tag}; echo child-err {tag} >&2")
    return f"value {tag}"


def chatty_failure(tag):
    print(f"before the failure {tag}")
    import sys

    sys.stderr.write(f"warning {tag}\n")
    raise ValueError(f"too noisy {tag}")


def unpicklable_failure(tag):
    print(f"printed by {tag}")
    e = RuntimeError(f"carries a generator {tag}")
    e.gen = (i for i in range(3))  # a generator cannot be serialized: TaskExecutionFailed
    raise e


def huge_print(tag, n):
    import sys

    sys.stdout.write(f"first line {tag}\n")
    sys.stdout.write("y" * n + "\n")
    sys.stdout.write(f"last line {tag}\n")
    return n


def rendezvous(tag, other, directory, lines):
    """Print ``lines`` lines of ``tag`` while the ``other`` task runs too
    (each waits, bounded, for the other's file: the two overlap)."""
    import os
    import sys
    import time

    open(os.path.join(directory, tag), "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(directory, other)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{other} never started beside {tag}")
        time.sleep(0.01)
    for i in range(lines):
        print(f"{tag} {i}")
        sys.stdout.flush()
        os.system(f"echo {tag} child {i}")
    return os.getpid()


def print_then_hang(tag):
    import os
    import time

    print(f"started {tag}")
    os.system(f"echo child of {tag}")
    time.sleep(60)


def print_then_die(tag):
    import os
    import sys

    print(f"last words {tag}")
    sys.stderr.write(f"dying {tag}\n")
    os._exit(3)


def leave_a_writer_behind(directory):
    import subprocess

    # writes "late" once the next task has started, then says so
    subprocess.Popen(["sh", "-c", f"while [ ! -e {directory}/go ]; do sleep 0.01; done; "
                                  f"echo late; touch {directory}/written"])
    print("early")


def wait_for_the_late_writer(directory):
    import os
    import time

    open(os.path.join(directory, "go"), "w").close()
    deadline = time.monotonic() + 20
    while not os.path.exists(os.path.join(directory, "written")):
        if time.monotonic() > deadline:
            raise TimeoutError("the background writer never wrote")
        time.sleep(0.01)
    print("mine")


def big_result(n, noise):
    if noise:
        print("z" * noise)
    return "x" * n


# ------------------------------------------------------------- bounds (pure)
def kept(text: str) -> str:
    """``text`` without its cut markers (what was kept of the output)."""
    return re.sub(r"\n\[funcx: [^\]]*\]\n", "", text)


def test_split_keeps_start_and_end_within_the_limit():
    assert split(10, 20) == (10, 0)
    assert split(100, 20) == (10, 10)
    assert split(100, 21) == (10, 11)
    assert split(100, 0) == (0, 0)


def test_cut_text_marks_the_cut_with_its_size_and_setting():
    text = "A" * 50 + "B" * 900 + "C" * 50
    out = cut_text(text, 100, "stdout", "FUNCX_TASK_OUTPUT_MAX")
    assert out.startswith("A" * 50) and out.endswith("C" * 50)
    assert "B" not in out
    assert "900 bytes of stdout cut here" in out
    assert "FUNCX_TASK_OUTPUT_MAX on the endpoint" in out
    assert cut_text("short", 100, "stdout") == "short"


def utf8(*texts: str) -> int:
    return sum(len(t.encode()) for t in texts)


def test_fit_shares_the_budget_and_gives_what_one_stream_leaves_to_the_other():
    out = fit({"stdout": "o" * 1000, "stderr": "e" * 10}, 500)
    assert out["stderr"] == "e" * 10
    assert MARKER_PREFIX in out["stdout"] and set(kept(out["stdout"])) == {"o"}
    assert 300 < len(kept(out["stdout"])) and utf8(*out.values()) <= 500  # markers included
    both = fit({"stdout": "o" * 1000, "stderr": "e" * 1000}, 600)
    assert kept(both["stdout"]) == "o" * len(kept(both["stderr"]))  # an equal share each
    assert set(kept(both["stderr"])) == {"e"} and utf8(*both.values()) <= 600
    assert "FUNCX_MAX_RESULT_BYTES on the service" in both["stdout"]
    assert fit({"stdout": "", "stderr": "x"}, 0)["stderr"].startswith("\n" + MARKER_PREFIX)


def test_cut_text_counts_utf8_bytes_and_never_splits_a_character():
    text = "é" * 1000 + "€" * 1000  # 2 and 3 bytes each
    out = cut_text(text, 100, "stdout")
    # 50 bytes from each end: 25 "é"; 16 "€" (48 bytes: whole characters only)
    assert kept(out) == "é" * 25 + "€" * 16
    assert f"{utf8(text) - 98} bytes of stdout cut here; 100 bytes are kept" in out
    assert cut_text("ééé", 6, "stdout") == "ééé"


def test_fit_keeps_non_ascii_output_within_the_byte_budget():
    out = fit({"stdout": "é" * 5000, "stderr": "日本" * 500}, 2000)
    assert utf8(*out.values()) <= 2000
    assert set(kept(out["stdout"])) == {"é"} and set(kept(out["stderr"])) <= {"日", "本"}


def test_display_tail_shows_the_last_lines_and_says_how_many_it_left_out():
    text = "".join(f"line {i}\n" for i in range(100))
    shown = display_tail(text, "stdout", lines=3)
    assert shown == ["[funcx: 97 earlier line(s) not shown: the exception's .stdout has all "
                     "of it]", "line 97", "line 98", "line 99"]
    assert display_tail("a\nb\n", "stderr") == ["a", "b"]
    long = display_tail("x" * 10_000, "stdout", chars=100)
    assert long[-1] == "…" + "x" * 100 and len(long) == 1  # one line, its end
    assert sum(map(len, display_tail("y" * 60 + "\n" + "z" * 60, "stdout", chars=100))) < 200


def test_the_failure_display_bounds_what_it_shows():
    from funcx.sdk.results import rebuild_exception

    out = "".join(f"step {i}\n" for i in range(5000))
    exc = rebuild_exception({"task_id": "t-1", "status": "failed", "stdout": out,
                             "exception": "Traceback (most recent call last):\nOSError: disk"},
                            SER)
    assert isinstance(exc, TaskExecutionFailed) and exc.stdout == out  # all of it is kept
    shown = "".join(traceback.format_exception(exc))
    assert "step 4999" in shown and "step 4000" not in shown and len(shown) < 2000
    assert "4980 earlier line(s) not shown" in shown
    own = rebuild_exception({"task_id": "t-2", "status": "failed", "stdout": out,
                             "exception": "Traceback (most recent call last):\nValueError: v",
                             "exception_data": SER.serialize(ValueError("v"))}, SER)
    assert isinstance(own, ValueError) and own.stdout == out
    shown = "".join(traceback.format_exception(own))
    assert "step 4999" in shown and "step 4000" not in shown and len(shown) < 2000
    assert "\n".join(own._render_traceback_()).count("step ") == 20  # the notebook's display


# ------------------------------------------------------ capture (in process)
@contextlib.contextmanager
def worker_streams():
    """sys.stdout / sys.stderr on fd 1 / fd 2, as in a worker process (pytest
    points them at its own capture, past the descriptors, during a test)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = (open(fd, "w", closefd=False) for fd in (1, 2))  # noqa: SIM115
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved


def test_capture_takes_python_child_and_c_output_and_restores_the_descriptors(capfd):
    libc = ctypes.CDLL(None)
    with worker_streams():
        print("before")
        with OutputCapture(limit=10_000) as cap:
            print("python print")
            sys.stderr.write("python stderr\n")
            os.system("echo from a child; echo child stderr >&2")
            libc.printf(b"from C printf\n")  # buffered by C stdio: flushed at the end
            os.write(2, b"raw fd 2\n")
        print("after")
    assert cap.stdout == "python print\nfrom a child\nfrom C printf\n"  # in order
    assert cap.stderr == "python stderr\nchild stderr\nraw fd 2\n"
    seen = capfd.readouterr()
    assert seen.out == "before\nafter\n"  # the worker's own output is its own again
    assert "python stderr" not in seen.err


def test_capture_bounds_each_stream_with_the_marker():
    with OutputCapture(limit=1000) as cap:
        os.write(1, b"S" * 600 + b"M" * 100_000 + b"E" * 600)
        os.write(2, b"small")
    assert cap.stdout.startswith("S" * 500) and cap.stdout.endswith("E" * 500)
    assert kept(cap.stdout) == "S" * 500 + "E" * 500
    assert "100200 bytes of stdout cut here; 1000 bytes are kept" in cap.stdout
    assert "FUNCX_TASK_OUTPUT_MAX" in cap.stdout
    assert cap.stderr == "small"


@pytest.mark.parametrize("value, kept_bytes", [("1234", 1234), ("0", 0), ("lots", 65536),
                                              ("-5", 65536)])
def test_a_bad_output_limit_falls_back_to_the_default_and_says_so(monkeypatch, capsys, value,
                                                                  kept_bytes):
    from endpoint.task_output import output_limit

    monkeypatch.setenv("FUNCX_TASK_OUTPUT_MAX", value)
    assert output_limit() == kept_bytes
    err = capsys.readouterr().err
    assert ("is not a number of bytes" in err) is (kept_bytes == 65536)
    if kept_bytes == 65536:
        assert f"FUNCX_TASK_OUTPUT_MAX={value!r}" in err


def test_capture_decodes_invalid_utf8_without_failing():
    with OutputCapture(limit=100) as cap:
        os.write(1, b"ok \xff\xfe end\n")
    assert cap.stdout.startswith("ok ") and cap.stdout.endswith(" end\n")


def _task(fn, *args) -> Task:
    return Task(task_id="t1", function_id="f1", task_group_id="g1",
                function_code=SER.serialize_function(fn), payload=SER.serialize_payload(args, {}))


def test_executor_puts_the_output_of_success_and_failure_in_the_result():
    ex = Executor(max_output_bytes=10_000)
    with worker_streams():
        ok = ex.run(_task(chatty, "t"))
        bad = ex.run(_task(chatty_failure, "f"))
        quiet = ex.run(_task(big_result, 3, 0))
    assert ok.status == "success" and SER.deserialize(ok.data) == "value t"
    assert ok.stdout == "print t\nstdout.write t\nchild t\n"
    assert ok.stderr == "stderr.write t\nchild-err t\n"
    assert bad.status == "failed" and "too noisy f" in bad.data
    assert bad.stdout == "before the failure f\n" and bad.stderr == "warning f\n"
    assert quiet.stdout == quiet.stderr == ""  # nothing of the earlier tasks


def test_a_writer_left_behind_by_one_task_never_writes_into_the_next(tmp_path):
    ex = Executor(max_output_bytes=10_000, output_prefix=str(tmp_path / "slot-0"))
    with worker_streams():
        first = ex.run(_task(leave_a_writer_behind, str(tmp_path)))
        second = ex.run(_task(wait_for_the_late_writer, str(tmp_path)))
    assert first.status == second.status == "success", (first.data, second.data)
    assert first.stdout == "early\n"
    assert second.stdout == "mine\n"  # "late" went to the first task's (closed) file


def test_capture_falls_back_when_its_named_file_cannot_be_made(tmp_path):
    ex = Executor(max_output_bytes=10_000, output_prefix=str(tmp_path / "gone" / "slot-0"))
    with worker_streams():
        r = ex.run(_task(chatty, "n"))
    assert r.status == "success" and r.stdout.startswith("print n\n")


def test_a_directory_at_the_capture_path_still_captures_every_task(tmp_path):
    """``<prefix>.stdout`` is in every worker's environment: a function that
    makes a directory there must not stop the capture of later tasks."""
    prefix = str(tmp_path / "slot-0")
    os.mkdir(prefix + ".stdout")
    os.mkdir(prefix + ".stderr")
    ex = Executor(max_output_bytes=10_000, output_prefix=prefix)
    with worker_streams():
        first = ex.run(_task(chatty, "d1"))
        second = ex.run(_task(chatty, "d2"))
    for r, tag in ((first, "d1"), (second, "d2")):
        assert r.status == "success", r.data
        assert r.stdout.startswith(f"print {tag}\n") and f"stderr.write {tag}" in r.stderr


def test_leftover_ignores_a_directory_at_the_capture_path(tmp_path):
    from endpoint.task_output import leftover

    prefix = str(tmp_path / "task-output-0")
    os.mkdir(prefix + ".stdout")
    assert leftover(prefix, 100) == {"stdout": "", "stderr": ""}


def test_a_task_runs_even_when_its_output_cannot_be_captured(monkeypatch):
    import errno

    from endpoint import task_output

    def no_space(directory):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(task_output, "_anonymous_file", no_space)
    with worker_streams():
        r = Executor(max_output_bytes=10_000).run(_task(big_result, 2, 0))
    assert r.status == "success" and SER.deserialize(r.data) == "xx"
    assert r.stdout == "" and "output could not be captured" in r.stderr
    assert "No space left on device" in r.stderr


def test_a_future_has_no_output_until_it_is_done():
    from funcx.sdk.executor import FuncXFuture

    fut = FuncXFuture("t-1")
    assert fut.stdout is None and fut.stderr is None
    fut._output = {"stdout": "x\n", "stderr": ""}
    assert fut.stdout is None  # still pending
    fut._finish(42)
    assert (fut.stdout, fut.stderr) == ("x\n", "")


# --------------------------------------------------------------- messages
def _results(with_output: bool) -> list[Result]:
    out = [Result("t1", "success", data="d1", exc_data="", completion_t="1700000000.5"),
           Result("t2", "failed", data="tb", exc_data="x", completion_t="1700000001.5")]
    if with_output:
        out[1].stdout, out[1].stderr = "printed ✓\n", "warned\n"
    return out


@pytest.mark.parametrize("with_output", [False, True])
def test_results_carry_output_over_zeromq(with_output):
    frames = pack_results(_results(with_output))
    assert len(frames) == 2 + (8 if with_output else 4)  # no output: the old two frames each
    assert unpack_results(unpack(frames)) == _results(with_output)


@pytest.mark.parametrize("with_output", [False, True])
def test_results_carry_output_through_the_results_stream(with_output):
    fields = encode_results(_results(with_output))
    assert ("stdout" in fields) is with_output
    assert decode_result_entry(fields) == _results(with_output)
    single = _results(with_output)[1]
    assert decode_result_entry({**single.to_fields(), "v": "1"}) == [single]


def test_a_results_entry_with_a_wrong_output_count_is_refused():
    fields = encode_results(_results(True))
    fields["stderr"] = "1\nx"  # one buffer for two results
    with pytest.raises(ProtocolError, match="stderr count differs"):
        decode_result_entry(fields)
    fields["stderr"] = 17  # type: ignore[assignment]
    with pytest.raises(ProtocolError, match="bad results stderr"):
        decode_result_entry(fields)


def test_ingester_cuts_output_to_fit_the_result_limit_and_never_refuses_for_it():
    from backend.ingester import _bounded

    r = Result("t1", "success", data="d" * 600, stdout="o" * 5000, stderr="e" * 10)
    out = _bounded(r, 1000)
    assert isinstance(out, Result) and out.status == "success" and out.data == "d" * 600
    assert out.stderr == "e" * 10 and set(kept(out.stdout)) == {"o"}
    assert 200 < len(kept(out.stdout)) and utf8(out.data, out.stdout, out.stderr) <= 1000
    assert "FUNCX_MAX_RESULT_BYTES" in out.stdout
    wide = _bounded(Result("t3", "success", data="d" * 500, stdout="é" * 5000), 1000)
    assert isinstance(wide, Result) and wide.status == "success"
    assert utf8(wide.data, wide.stdout, wide.stderr) <= 1000  # bytes, not characters
    assert set(kept(wide.stdout)) == {"é"}
    too_big = _bounded(Result("t2", "success", data="d" * 2000, stdout="kept"), 1000)
    assert isinstance(too_big, Result) and too_big.status == "failed"
    assert "MaxResultSizeExceeded" in too_big.data and too_big.stdout == "kept"


# ------------------------------------------------------- the real endpoint
@pytest.fixture(scope="module")
def fids(fxc):
    return {f.__name__: fxc.register_function(f) for f in (
        chatty, chatty_failure, unpicklable_failure, huge_print, rendezvous, big_result,
        print_then_hang, print_then_die)}


def _run(fxc, endpoint, fids, fn: str, *args) -> str:
    tid = fxc.run(*args, endpoint_id=endpoint, function_id=fids[fn])
    fxc.wait([tid], timeout=WAIT_S)
    return tid


def test_output_is_in_get_task_and_the_task_document(fxc, endpoint, fids, http):
    tag = uuid.uuid4().hex
    tid = _run(fxc, endpoint, fids, "chatty", tag)
    st = fxc.get_task(tid)
    assert st["result"] == f"value {tag}"
    assert st["stdout"] == f"print {tag}\nstdout.write {tag}\nchild {tag}\n"
    assert st["stderr"] == f"stderr.write {tag}\nchild-err {tag}\n"
    doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
    assert (doc["stdout"], doc["stderr"]) == (st["stdout"], st["stderr"])
    batch = http.post(f"{http.base_url}/v2/batch_status", json={"task_ids": [tid]}).json()
    assert batch["results"][tid]["stdout"] == st["stdout"]


def test_a_silent_task_has_no_output_fields(fxc, endpoint, fids, http):
    tid = _run(fxc, endpoint, fids, "big_result", 3, 0)
    doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
    assert doc["status"] == "success" and "stdout" not in doc and "stderr" not in doc
    st = fxc.get_task(tid)
    assert st["stdout"] == ""
    assert st["stderr"] == "" and st["result"] == "xxx"


def test_block_output_file_no_longer_gets_task_output(fxc, endpoint, fids):
    from endpoint.paths import EndpointDir

    tag = uuid.uuid4().hex
    tid = _run(fxc, endpoint, fids, "chatty", tag)
    assert tag in fxc.get_task(tid)["stdout"]
    logs = [p for p in EndpointDir(ENDPOINT_NAME).path.rglob("*") if p.is_file()
            and p.suffix in (".out", ".err", ".log")]
    assert any(p.name.endswith(".sh.out") for p in logs), logs  # the block's own output file
    for p in logs:
        assert tag not in p.read_text(errors="replace"), p


def test_a_failed_task_raises_with_its_output_attached_and_displayed(fxc, endpoint, fids):
    tag = uuid.uuid4().hex
    tid = _run(fxc, endpoint, fids, "chatty_failure", tag)
    st = fxc.get_task(tid)
    assert st["status"] == "failed" and st["stdout"] == f"before the failure {tag}\n"
    with pytest.raises(ValueError, match=f"too noisy {tag}") as info:
        fxc.get_result(tid)
    assert info.value.stdout == f"before the failure {tag}\n"
    assert info.value.stderr == f"warning {tag}\n"
    shown = "".join(traceback.format_exception(info.value))
    assert f"before the failure {tag}" in shown and f"warning {tag}" in shown


def test_an_exception_that_cannot_travel_still_carries_the_output(fxc, endpoint, fids):
    tag = uuid.uuid4().hex
    tid = _run(fxc, endpoint, fids, "unpicklable_failure", tag)
    with pytest.raises(TaskExecutionFailed) as info:
        fxc.get_result(tid)
    assert f"carries a generator {tag}" in str(info.value)
    assert info.value.stdout == f"printed by {tag}\n" and info.value.stderr == ""
    shown = "".join(traceback.format_exception(info.value))
    assert f"--- the task's stdout ---\nprinted by {tag}" in shown


def test_executor_futures_expose_the_output(fxc, endpoint, fids):
    from funcx import FuncXExecutor

    tag = uuid.uuid4().hex
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:
        ok = ex.submit(chatty, tag)
        bad = ex.submit(chatty_failure, tag)
        assert ok.stdout is None or ok.done()  # None until it is done
        assert ok.result(timeout=WAIT_S) == f"value {tag}"
        assert ok.stdout is not None and f"child {tag}" in ok.stdout
        assert ok.stderr is not None and f"child-err {tag}" in ok.stderr
        with pytest.raises(ValueError) as info:
            bad.result(timeout=WAIT_S)
    assert bad.stdout == f"before the failure {tag}\n" == info.value.stdout
    assert bad.stderr == f"warning {tag}\n"


def test_two_concurrent_tasks_on_one_manager_do_not_mix_output(fxc, endpoint, fids, tmp_path):
    meet = tmp_path / "meet"
    meet.mkdir()
    a, b = f"A{uuid.uuid4().hex[:8]}", f"B{uuid.uuid4().hex[:8]}"
    ta = fxc.run(a, b, str(meet), 40, endpoint_id=endpoint, function_id=fids["rendezvous"])
    tb = fxc.run(b, a, str(meet), 40, endpoint_id=endpoint, function_id=fids["rendezvous"])
    fxc.wait([ta, tb], timeout=WAIT_S)
    pid_a, pid_b = fxc.get_result(ta), fxc.get_result(tb)
    assert pid_a != pid_b  # two workers, at the same time (each waited for the other)
    for tid, mine, other in ((ta, a, b), (tb, b, a)):
        lines = fxc.get_task(tid)["stdout"].splitlines()
        assert len(lines) == 80, lines[:5]
        assert all(line.startswith(mine + " ") for line in lines), [
            x for x in lines if not x.startswith(mine)][:5]
        assert sorted(lines) == sorted([f"{mine} {i}" for i in range(40)]
                                       + [f"{mine} child {i}" for i in range(40)])
        assert other not in "".join(lines)


def test_a_task_killed_at_its_walltime_keeps_what_it_printed(fxc, endpoint, fids):
    from funcx.errors import TaskTimeout

    tag = uuid.uuid4().hex
    batch = fxc.create_batch(resource_specification={"walltime": 1})
    batch.add(tag, endpoint_id=endpoint, function_id=fids["print_then_hang"])
    [tid] = fxc.batch_run(batch)
    fxc.wait([tid], timeout=WAIT_S)
    with pytest.raises(TaskTimeout) as info:
        fxc.get_result(tid)
    assert info.value.stdout == f"started {tag}\nchild of {tag}\n"
    assert fxc.get_task(tid)["stdout"] == info.value.stdout


def test_a_task_whose_worker_died_keeps_what_it_printed(fxc, endpoint, fids):
    from funcx.errors import WorkerLost

    tag = uuid.uuid4().hex
    tid = _run(fxc, endpoint, fids, "print_then_die", tag)
    with pytest.raises(WorkerLost) as info:
        fxc.get_result(tid)
    assert info.value.stdout == f"last words {tag}\n" and info.value.stderr == f"dying {tag}\n"


def test_leftover_reads_only_plain_files(tmp_path):
    from endpoint.task_output import leftover

    prefix = str(tmp_path / "task-output-0")
    secret = tmp_path / "secret"
    secret.write_text("not yours")
    os.symlink(secret, prefix + ".stdout")
    os.mkfifo(prefix + ".stderr")  # reading it would block the manager
    assert leftover(prefix, 100) == {"stdout": "", "stderr": ""}
    assert not os.path.lexists(prefix + ".stdout") and not os.path.lexists(prefix + ".stderr")
    assert secret.read_text() == "not yours"
    Path(prefix + ".stdout").write_text("y" * 300)
    got = leftover(prefix, 100)["stdout"]
    assert kept(got) == "y" * 100 and "200 bytes of stdout cut here" in got
    assert not os.path.exists(prefix + ".stdout")  # read once, then removed


def test_a_huge_print_is_cut_with_the_marker_and_the_result_arrives(fxc, endpoint, fids):
    from funcx.defaults import setting

    limit = int(setting("TASK_OUTPUT_MAX"))
    tag = uuid.uuid4().hex
    n = 20 * 1024 * 1024
    tid = _run(fxc, endpoint, fids, "huge_print", tag, n)
    st = fxc.get_task(tid)
    assert st["result"] == n
    out = st["stdout"]
    assert out.startswith(f"first line {tag}\n") and out.endswith(f"last line {tag}\n")
    assert len(out) < limit + 300
    cut = n + len(f"first line {tag}\n") + 1 + len(f"last line {tag}\n") - limit
    assert f"{MARKER_PREFIX}{cut} bytes of stdout cut here; {limit} bytes are kept: " \
           f"raise FUNCX_TASK_OUTPUT_MAX on the endpoint" in out


@pytest.mark.slow
def test_output_is_cut_to_what_a_result_near_the_service_limit_leaves(fxc, endpoint, fids):
    """A result just under FUNCX_MAX_RESULT_BYTES arrives; its output is cut by
    the ingester to what the result leaves, never making it fail."""
    from funcx.defaults import setting
    from funcx.sdk.limits import serialized_bytes

    limit = int(setting("MAX_RESULT_BYTES"))

    def size(n: int) -> int:  # as the ingester measures a result (its data, decoded)
        return serialized_bytes(SER.serialize("x" * n))

    lo, hi = 0, limit  # the longest "x" * n that leaves 300 bytes of the limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(mid) <= limit - 300:
            lo = mid
        else:
            hi = mid - 1
    tid = _run(fxc, endpoint, fids, "big_result", lo, 50_000)
    st = fxc.get_task(tid)
    assert st["status"] == "success" and len(st["result"]) == lo
    from funcx.protocol.output_limits import MARKER_ROOM

    # what the result leaves (300 or a little more), less the marker's room
    k = limit - size(lo) - MARKER_ROOM
    assert kept(st["stdout"]) == "z" * (k // 2) + "z" * (k - k // 2 - 1) + "\n"
    assert "raise FUNCX_MAX_RESULT_BYTES on the service" in st["stdout"]


def test_readme_documents_where_output_goes():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Where is my output?", 1)[1].split("\n## ", 1)[0]
    for needed in ("FUNCX_TASK_OUTPUT_MAX", "get_task", "future.stdout", ".stdout",
                   "funcx task logs", "FUNCX_MAX_RESULT_BYTES"):
        assert needed in section, needed


def test_the_output_stream_names_are_defined_once():
    """``("stdout", "stderr")`` lives in funcx.protocol.output_limits.STREAMS;
    the capture, the wire formats, the store and the display import it."""
    import funcx.protocol.output_limits as limits

    root = Path(__file__).resolve().parents[1]
    literal = re.compile(r"""\(\s*["']stdout["']\s*,\s*["']stderr["']\s*\)""")
    users = ["endpoint/task_output.py", "funcx/protocol/streams.py", "funcx/protocol/messages.py",
             "backend/store/tasks.py", "backend/store/results.py", "funcx/sdk/render.py",
             "funcx/sdk/results.py"]
    for path in users:
        text = (root / path).read_text()
        assert not literal.search(text), f"{path} spells the stream names out again"
        assert re.search(r"from funcx\.protocol\.output_limits import [^\n]*\bSTREAMS\b", text), path
    assert limits.STREAMS == ("stdout", "stderr")
