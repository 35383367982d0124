"""The ``FuncXExecutor`` document (seeds/004), item by item, against the live
service and endpoint.

The document's scripts run as written, as real scripts, with only the endpoint
id filled in.  Where the document itself does not run (a typo: an unclosed
f-string, ``fx.submit`` for ``fxe.submit``, ``FuncxExecutor``, a stray ``)``,
``self.funcx_client``), the smallest correction is made and named in the
script's ``FIXES`` note; the README's compatibility section lists them too.
"""
from __future__ import annotations

import concurrent.futures as cf
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from funcx import FuncXExecutor
from funcx.sdk.executor import FuncXFuture


def run_script(tmp_path: Path, name: str, source: str, *args: str,
               timeout: float = 180) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    p = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


# ------------------------------------------------------------ the scripts
BASIC = '''
from funcx import FuncXExecutor

def double(x):
    return x * 2

tutorial_endpoint_id = '{ep}'
with FuncXExecutor(endpoint_id=tutorial_endpoint_id) as fxe:
    fut = fxe.submit(double, 7)

    print(fut.result())
'''


def test_basic_example(tmp_path, endpoint):
    """funcxexecutor_basic_example.py"""
    assert run_script(tmp_path, "basic.py", BASIC.format(ep=endpoint)).strip() == "14"


COLLATZ = '''
from funcx import FuncXExecutor

def generate_collatz_sequence(N: int, sequence_limit = 10_000):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        if N % 2:
            N = 3 * N + 1
        else:
            N //= 2  # okay because guaranteed integer result
        seq.append(N)
    return seq

ep_id = "{ep}"

generate_from = 1
generate_through = 100
futs, results, disproof_candidates = [], [], []
with FuncXExecutor(endpoint_id=ep_id) as fxe:
    for n in range(generate_from, generate_through + 1):
        futs.append(fxe.submit(generate_collatz_sequence, n))
    print("Tasks all submitted; waiting for results")

# The futures were appended to the `futs` list in order, so one could wait
# for each result in turn to get a submission-ordered set of results:
for f in futs:
    r = f.result()
    results.append(r)
    if r[-1] != 1:
        # of course, given the conjecture, we don't expect this branch
        disproof_candidates.append(r[0])

print(f"All sequences generated (from {{generate_from}} to {{generate_through}})")
for res in results:
    print(res)

if disproof_candidates:
    print("Possible conjecture disproving integers:", disproof_candidates)
'''


def test_collatz_example(tmp_path, endpoint):
    """funcxexecutor_collatz.py: 100 futures, waited for after the ``with`` ends."""
    out = run_script(tmp_path, "collatz.py", COLLATZ.format(ep=endpoint)).splitlines()
    assert out[0] == "Tasks all submitted; waiting for results"
    assert out[1] == "All sequences generated (from 1 to 100)"
    seqs = [eval(line) for line in out[2:]]  # noqa: S307 - our own script's list output
    assert [s[0] for s in seqs] == list(range(1, 101))
    assert all(s[-1] == 1 for s in seqs)
    assert max(len(s) for s in seqs) == 119  # 97: 118 steps
    assert not any("disproving" in line for line in out)


EXCEPTIONS = '''
from funcx import FuncXExecutor

ep_id = "{ep}"

def generate_collatz_sequence(N: int, sequence_limit=100):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        if N % 2:
            N = 3 * N + 1
        else:
            N //= 2  # okay because guaranteed integer result
        seq.append(N)
    if N != 1:
        raise ValueError(f"Sequence not terminated in {{sequence_limit}} steps")
    return seq

with FuncXExecutor(endpoint_id=ep_id) as fxe:
    future = fxe.submit(generate_collatz_sequence, 1234567890)

try:
    print(future.result())
except Exception as exc:
    # FIXES: the document leaves this f-string unclosed
    print(f"Oh no!  The task raised an exception: {{exc}}")
    print(type(exc).__name__)
'''


def test_handle_result_exceptions_example(tmp_path, endpoint):
    """funcxexecutor_handle_result_exceptions.py: the remote exception is re-raised."""
    out = run_script(tmp_path, "exc.py", EXCEPTIONS.format(ep=endpoint)).splitlines()
    assert out[0].startswith(
        "Oh no!  The task raised an exception: Sequence not terminated in 100 steps")
    assert out[-1] == "ValueError"


AS_COMPLETED = '''
import concurrent.futures
from funcx import FuncXExecutor  # FIXES: the document's snippet omits this import

endpoint_id = "{ep}"

def double(x):
    return f"{{x}} -> {{x * 2}}"

def slow_double(x):
    import random, time
    time.sleep(x * random.random() / 20)  # FIXES: /20, the document's sleeps take minutes
    return f"{{x}} -> {{x * 2}}"

with FuncXExecutor(endpoint_id=endpoint_id) as fxe:
    futs = [fxe.submit(double, i) for i in range(10)]

    print("Results:", [f.result() for f in futs])

    futs = [fxe.submit(slow_double, i) for i in range(10, 20)]  # FIXES: fx -> fxe
    for f in concurrent.futures.as_completed(futs):
        print("Received:", f.result())
'''


def test_results_as_arrived_example(tmp_path, endpoint):
    """funcxexecutor_results_as_arrived.py"""
    out = run_script(tmp_path, "asc.py", AS_COMPLETED.format(ep=endpoint)).splitlines()
    assert out[0] == "Results: " + str([f"{i} -> {i * 2}" for i in range(10)])
    received = sorted(line for line in out[1:])
    assert received == sorted(f"Received: {i} -> {i * 2}" for i in range(10, 20))


RELOAD = '''
import os, signal, sys, time, typing as t
from funcx import FuncXExecutor
from funcx.sdk.executor import FuncXFuture

task_group_id = sys.argv[1] if len(sys.argv) > 1 else None

def task_kernel(num):
    return f"your funcx logic result, from task: {{num}}"

ep_id = "{ep}"
with FuncXExecutor(endpoint_id=ep_id) as fxe:
    futures: t.Iterable[FuncXFuture]
    if task_group_id:
        print(f"Reloading tasks from Task Group ID: {{task_group_id}}")
        fxe.task_group_id = task_group_id
        futures = fxe.reload_tasks()

    else:
        print(
            "New session; creating funcX tasks; if this script dies, rehydrate"
            f" futures with this Task Group ID: {{fxe.task_group_id}}", flush=True
        )
        num_tasks = 5
        futures = [fxe.submit(task_kernel, i + 1) for i in range(num_tasks)]

        # Ensure all tasks have been sent upstream ...
        while fxe.task_count_submitted < num_tasks:
            time.sleep(1)
            print(f"Tasks submitted upstream: {{fxe.task_count_submitted}}")

        bname = sys.argv[0]
        if sys.argv[0] != sys.orig_argv[0]:
            bname = f"{{sys.orig_argv[0]}} {{bname}}"

        print("Simulating unexpected process death!  Now reload the session")
        print("by rerunning this script with the task_group_id:\\n")
        print(f"  {{bname}} {{fxe.task_group_id}}\\n", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        exit(1)  # In case KILL takes split-second to process

# Get results:
results, exceptions = [], []
for f in futures:
    try:
        results.append(f.result(timeout=10))
    except Exception as exc:
        exceptions.append(exc)
print("Results:\\n ", "\\n  ".join(results))
'''


def test_reload_tasks_example(tmp_path, endpoint):
    """funcxexecutor_reload_tasks.py: run, SIGKILLed, rerun with the task group id."""
    path = tmp_path / "reload.py"
    path.write_text(RELOAD.format(ep=endpoint))
    first = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    head = first.stdout.splitlines()[0]
    tg = head.rsplit(" ", 1)[1]
    assert head.startswith("New session; creating funcX tasks") and len(tg) == 36
    assert f"{path} {tg}" in first.stdout  # the rerun command it tells the user

    second = subprocess.run([sys.executable, str(path), tg], capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0, second.stderr
    out = second.stdout.splitlines()
    assert out[0] == f"Reloading tasks from Task Group ID: {tg}"
    assert out[1] == "Results:"
    got = sorted(line.strip() for line in out[2:])
    assert got == [f"your funcx logic result, from task: {i}" for i in range(1, 6)]


SUBMIT_BATCH = '''
from funcx import FuncXClient

def expensive_task(task_arg):
    import time
    time.sleep(0.2)  # FIXES: the document sleeps 24 hours
    return "All done!"

ep_id = "{ep}"
fxc = FuncXClient()

print(f"Task Group ID for later reloading: {{fxc.session_task_group_id}}")
fn_id = fxc.register_function(expensive_task)
batch = fxc.create_batch()
for task_i in range(10):
    batch.add(fn_id, ep_id, args=(task_i,))
fxc.batch_run(batch)  # FIXES: the document says self.funcx_client.batch_run
'''

RELOAD_BATCH = '''
import concurrent.futures  # FIXES: the document does not import it
from funcx import FuncXExecutor

ep_id = "{ep}"
tg_id = "{tg}"
with FuncXExecutor(endpoint_id=ep_id, task_group_id=tg_id) as fxe:  # FIXES: FuncxExecutor
    futures = fxe.reload_tasks()  # FIXES: a stray ")"
    for f in concurrent.futures.as_completed(futures):  # FIXES: futs -> futures
        print("Received:", f.result())
'''


def test_submit_batch_then_reload_with_executor(tmp_path, endpoint):
    """funcxclient_submit_batch.py, then funcxexecutor_reload_batch.py in a new process."""
    out = run_script(tmp_path, "submit_batch.py", SUBMIT_BATCH.format(ep=endpoint))
    tg = out.strip().rsplit(" ", 1)[1]
    assert out.startswith("Task Group ID for later reloading: ") and len(tg) == 36
    out = run_script(tmp_path, "reload_batch.py", RELOAD_BATCH.format(ep=endpoint, tg=tg))
    assert out.splitlines() == ["Received: All done!"] * 10


# ------------------------------------------------------- in-process items
def generate_collatz_sequence(N: int, sequence_limit=10_000):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        N = 3 * N + 1 if N % 2 else N // 2
        seq.append(N)
    return seq


def double(x):
    return x * 2


def to_int(text):
    return int(text)


def snooze(x):
    import time

    time.sleep(x)
    return x


def test_done_checks_status_without_blocking(endpoint):
    """"Checking the Status of a Result": ``future.done()`` is a bool, at once."""
    with FuncXExecutor(endpoint_id=endpoint) as fxe:
        future = fxe.submit(snooze, 1.0)
        t0 = time.monotonic()
        status = future.done()
        assert time.monotonic() - t0 < 0.1
        assert status is False
        assert isinstance(future, FuncXFuture) and isinstance(future, cf.Future)
        future.result(timeout=60)
        assert future.done() is True
        assert future.task_id  # the task's id, once submitted


def test_submit_returns_before_the_request(endpoint, fxc):
    """``.submit()`` returns a Future before any HTTP call: the submit thread sends it."""
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as fxe:
        fxe.register_function(double)  # registration is synchronous; cache it first
        sent = fxe._submit_web.request_count
        futs = [fxe.submit(double, i) for i in range(20)]
        assert all(isinstance(f, FuncXFuture) for f in futs)
        assert [f.result(timeout=60) for f in futs] == [2 * i for i in range(20)]
        # coalesced: far fewer submit requests than submits
        assert fxe._submit_web.request_count - sent < 20


def test_funcx_client_argument_is_used(endpoint, fxc):
    """``FuncXExecutor(funcx_client=...)`` (funcX 1.x) and ``client=``."""
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as fxe:
        assert fxe.funcx_client is fxc and fxe.client is fxc
        assert fxe.submit(double, 4).result(timeout=60) == 8


def test_explicit_shutdown_waits_for_results(endpoint, fxc):
    """"it must be told, either explicitly with a call to .shutdown()"."""
    fxe = FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc)
    futs = [fxe.submit(snooze, 0.2) for _ in range(3)]
    fxe.shutdown()
    assert all(f.done() for f in futs)
    assert [f.result() for f in futs] == [0.2] * 3
    with pytest.raises(RuntimeError):
        fxe.submit(double, 1)


def test_shutdown_cancel_futures(endpoint, fxc):
    """``shutdown(wait=True, cancel_futures=True)``, Python's Executor signature:
    finished futures keep their results; waiting ones are cancelled, on the
    service too, and are not waited for."""
    offline = fxc.register_endpoint("doc-executor-cancel")["endpoint_id"]
    try:
        fxe = FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc)
        first = fxe.submit(double, 1)
        assert first.result(timeout=60) == 2
        fxe.endpoint_id = offline
        waiting = fxe.submit(double, 2)
        assert waiting.submitted.wait(60)
        t0 = time.monotonic()
        fxe.shutdown(wait=True, cancel_futures=True)
        assert time.monotonic() - t0 < 30
        assert first.result() == 2
        assert waiting.cancelled()
        assert fxc.get_task(waiting.task_id)["status"] == "cancelled"
    finally:
        fxc.delete_endpoint(offline)


def test_batch_size_bounds_each_request(endpoint, fxc):
    """``batch_size``: no submit request carries more tasks than it."""
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc, batch_size=4) as fxe:
        fxe.register_function(double)
        before = fxe._submit_web.request_count
        futs = [fxe.submit(double, i) for i in range(17)]
        assert [f.result(timeout=60) for f in futs] == [2 * i for i in range(17)]
        assert fxe._submit_web.request_count - before >= 5  # ceil(17 / 4)
        assert fxe.batch_size == 4


def test_endpoint_id_can_be_switched(endpoint, fxc):
    """``fxe.endpoint_id = other``: later submits go to the other endpoint."""
    other = fxc.register_endpoint("doc-executor-offline")["endpoint_id"]
    try:
        with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as fxe:
            assert fxe.endpoint_id == endpoint
            here = fxe.submit(double, 3)
            fxe.endpoint_id = other
            there = fxe.submit(double, 5)
            assert here.result(timeout=60) == 6
            assert there.submitted.wait(60)
            task = fxc.get_task(there.task_id)
            assert task["status"] in ("received", "waiting-for-ep")  # nobody serves `other`
            assert not there.done()
            fxe.shutdown(cancel_futures=True)
            assert there.cancelled()
    finally:
        fxc.delete_endpoint(other)


def test_task_group_id_given_and_read(endpoint, fxc):
    """``task_group_id=`` at construction, and ``.task_group_id`` read back."""
    tg = fxc.session_task_group_id
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc, task_group_id=tg) as fxe:
        assert fxe.task_group_id == tg
        fut = fxe.submit(double, 21)
        assert fut.result(timeout=60) == 42
        assert fxe.task_count_submitted == 1
    ids = [t["id"] for t in fxc.get_taskgroup_tasks(tg)]
    assert fut.task_id in ids


def test_reload_tasks_in_process(endpoint, fxc):
    """``reload_tasks()`` returns finished futures finished, and unfinished ones watched."""
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as fxe:
        tg = fxe.task_group_id
        done = fxe.submit(double, 10)
        assert done.result(timeout=60) == 20
        slow = fxe.submit(snooze, 1.5)
        assert slow.submitted.wait(60)
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc, task_group_id=tg) as fxe2:
        futures = fxe2.reload_tasks()
        by_id = {f.task_id: f for f in futures}
        assert set(by_id) == {done.task_id, slow.task_id}
        assert by_id[slow.task_id].result(timeout=60) == 1.5
        assert by_id[done.task_id].result(timeout=10) == 20


def test_container_id_and_label(endpoint, fxc):
    """funcX 1.x ``container_id=`` (functions registered with that container) and ``label=``."""
    cid = fxc.register_container("docker://python:3", "docker", name="doc-exec")
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc, container_id=cid,
                       label="doc") as fxe:
        assert fxe.container_id == cid and fxe.label == "doc"
        fid = fxe.register_function(double)
        assert fxc.get_function(fid).get("container_uuid") == cid
        fxe.shutdown()


def test_registered_function_id_and_submit_to_registered_function(endpoint, fxc):
    """funcX 1.x: ``register_function(fn, function_id=...)`` reuses an id;
    ``submit_to_registered_function(function_id, args=None, kwargs=None)``."""
    fid = fxc.register_function(double)
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as fxe:
        assert fxe.register_function(double, function_id=fid) == fid
        assert fxe.submit(double, 2).result(timeout=60) == 4  # no second registration
        assert fxe.submit_to_registered_function(fid, args=(6,)).result(timeout=60) == 12
        assert fxe.submit_to_registered_function(fid, args=None, kwargs={"x": 7}) \
            .result(timeout=60) == 14


def test_options_of_other_generations_warn_once(endpoint, fxc):
    """Earlier executor options (``batch_enabled``, ``batch_interval``, ``poll_interval``,
    ...) are accepted and ignored with one warning that says why; never silently."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fxe = FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc, batch_enabled=True,
                            batch_interval=1.0, poll_interval=2, results_ws_uri="wss://x")
    try:
        mine = [w for w in caught if issubclass(w.category, UserWarning)]
        assert len(mine) == 1, [str(w.message) for w in caught]
        text = str(mine[0].message)
        for name in ("batch_enabled", "batch_interval", "poll_interval", "results_ws_uri"):
            assert name in text
        assert "ignored" in text
        assert fxe.submit(double, 1).result(timeout=60) == 2
    finally:
        fxe.shutdown()
    with pytest.raises(TypeError):
        FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc, batch_sise=3)  # a typo


def test_exception_is_reraised_with_the_remote_type(endpoint, fxc):
    """"Handling Exceptions": ``.result()`` raises; ``.exception()`` returns it."""
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as fxe:
        fut = fxe.submit(generate_collatz_sequence, 27, 10)
        assert len(fut.result(timeout=60)) == 10  # this copy truncates instead of raising
        bad = fxe.submit(to_int, "not a number")
        with pytest.raises(ValueError):
            bad.result(timeout=60)
        assert isinstance(bad.exception(), ValueError)


def test_it_is_a_python_executor(endpoint, fxc):
    """"a subclass of Python's Executor": ``map`` and ``concurrent.futures.wait`` work."""
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as fxe:
        assert isinstance(fxe, cf.Executor)
        assert list(fxe.map(double, range(6), timeout=60)) == [0, 2, 4, 6, 8, 10]
        futs = [fxe.submit(double, i) for i in range(3)]
        done, not_done = cf.wait(futs, timeout=60)
        assert len(done) == 3 and not not_done
