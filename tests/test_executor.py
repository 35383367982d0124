"""FuncXExecutor: the funcX documentation's examples run unchanged (but for the
endpoint id) as real scripts, plus scale, request counts and cancellation."""
from __future__ import annotations

import concurrent.futures as cf
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from funcx import FuncXExecutor

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"


def run_example(name: str, *args: str) -> str:
    p = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_doc_example_double(endpoint):
    assert run_example("executor_double.py", endpoint).strip() == "14"


def test_doc_example_collatz_sweep(endpoint):
    # 97 takes the most steps (118) of 1..100
    assert run_example("executor_collatz.py", endpoint).split() == ["97", "118"]


def test_doc_example_exception(endpoint):
    out = run_example("executor_exceptions.py", endpoint)
    assert "caught ZeroDivisionError: division by zero" in out
    assert "remote traceback" in out and "div_by_zero" in out and "return x / 0" in out


def test_doc_example_as_completed(endpoint):
    values = [int(x) for x in run_example("executor_as_completed.py", endpoint).split()]
    assert sorted(values) == [0, 1, 4, 9, 16, 25]
    assert values[-1] == 0  # the slow one arrives last


def test_doc_example_reload_after_sigkill(endpoint):
    submitter = subprocess.Popen([sys.executable, str(EXAMPLES / "executor_reload_submit.py"),
                                  endpoint], stdout=subprocess.PIPE, text=True)
    try:
        task_group_id = submitter.stdout.readline().strip()  # printed once all are submitted
        assert task_group_id
    finally:
        submitter.send_signal(signal.SIGKILL)
        submitter.wait()
    assert submitter.returncode == -signal.SIGKILL
    out = run_example("executor_reload_collect.py", endpoint, task_group_id)
    assert out.strip() == "[100, 101, 102, 103]"


def noop(x):
    return x


@pytest.mark.slow
def test_ten_thousand_submits_few_requests(fxc, endpoint):
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:
        futures = [ex.submit(noop, i) for i in range(10_000)]
        assert [f.result(timeout=300) for f in futures] == list(range(10_000))
        requests = ex._submit_web.request_count + ex._watch_web.request_count
    assert ex.task_count_submitted == 10_000
    assert all(f.task_id for f in futures)
    # far fewer than one per task: batched submits, results pushed in bulk
    assert requests < 1000, f"{requests} HTTP requests for 10,000 tasks"


def sleeper(seconds):
    import time

    time.sleep(seconds)
    return seconds


def test_cancel_a_queued_task(fxc, endpoint):
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:
        blockers = [ex.submit(sleeper, 1.5) for _ in range(2)]  # both workers busy
        queued = [ex.submit(sleeper, 0) for _ in range(20)]
        victim = queued[-1]
        assert victim.submitted.wait(30)
        assert victim.cancel()
        assert victim.cancelled()
        with pytest.raises(cf.CancelledError):
            victim.result()
        assert [f.result(timeout=60) for f in blockers] == [1.5, 1.5]
        assert all(f.result(timeout=60) == 0 for f in queued[:-1])
    doc = fxc.web_client.get(f"/v2/tasks/{victim.task_id}")
    assert doc["status"] == "cancelled"
    assert fxc.cancel_task(blockers[0].task_id) is False  # finished: nothing to cancel


def test_submit_after_shutdown_is_refused(fxc, endpoint):
    ex = FuncXExecutor(endpoint_id=endpoint, client=fxc)
    ex.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(noop, 1)


def test_register_once_per_function(fxc, endpoint):
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:
        assert [ex.submit(noop, i).result(timeout=60) for i in range(3)] == [0, 1, 2]
        assert len(ex._functions) == 1


def test_interpreter_exits_promptly_after_shutdown(endpoint):
    code = ("import sys; from funcx import FuncXExecutor\n"
            "def f(x):\n    return x\n"
            f"ex = FuncXExecutor(endpoint_id={endpoint!r})\n"
            "print(ex.submit(f, 5).result(timeout=60)); ex.shutdown()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "5"
