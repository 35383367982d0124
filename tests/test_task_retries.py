"""Task retries with real endpoint processes (README "Retries"): a task's
retry policy (``retries``, ``retry_on``) from the executor, ``options()`` and
``run``; a worker killed mid-task re-run per the endpoint's
``max_retries_on_system_failure``; every attempt in the task record; other
tenants' tasks untouched; bad policies refused at submit with their code.

(tests/test_retries.py is about the SDK riding out service outages.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from funcx.errors import WorkerLost
from tests.live import another_user, running_endpoint

ENDPOINT = "pytest-retries"
WAIT_S = 90


# ------------------------------------------------------------ remote functions
def flaky(marker_dir, fails, kind):
    """Fail the first ``fails`` attempts (one marker file per attempt), then
    return the attempt's number."""
    import os

    os.makedirs(marker_dir, exist_ok=True)
    n = len(os.listdir(marker_dir)) + 1
    open(os.path.join(marker_dir, str(n)), "w").close()
    if n <= fails:
        raise {"os": FileNotFoundError, "value": ValueError}[kind](f"attempt {n} fails")
    return n


def die_until(marker_dir, deaths):
    """Kill this worker on the first ``deaths`` attempts; then return the attempt's number."""
    import os
    import signal

    os.makedirs(marker_dir, exist_ok=True)
    n = len(os.listdir(marker_dir)) + 1
    open(os.path.join(marker_dir, str(n)), "w").close()
    if n <= deaths:
        os.kill(os.getpid(), signal.SIGKILL)
    return n


def square(x):
    return x * x


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def retry_ep(service):
    """A public endpoint of two workers that re-runs a task whose worker died once."""
    with running_endpoint(ENDPOINT, 2, public=True, max_retries_on_system_failure=1) as eid:
        yield eid


@pytest.fixture(scope="module")
def tenant(service, redis_client):
    """A client of a second user."""
    return another_user(redis_client, "tenant")


@pytest.fixture
def fxe(fxc, retry_ep):
    from funcx import FuncXExecutor

    ex = FuncXExecutor(endpoint_id=retry_ep, client=fxc, retries=2, retry_on=(OSError,))
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


def markers(d: Path) -> int:
    return len(list(d.iterdir())) if d.exists() else 0


# --------------------------------------------------------------------- tests
def test_a_task_failing_twice_with_oserror_succeeds_on_its_third_attempt(fxc, fxe, tmp_path):
    d = tmp_path / "m"
    fut = fxe.submit(flaky, str(d), 2, "os")
    assert fut.result(timeout=WAIT_S) == 3
    assert markers(d) == 3
    doc = fxc.get_task(fut.task_id)
    attempts = doc["attempts"]
    assert [a["n"] for a in attempts] == [1, 2, 3]
    assert [a["status"] for a in attempts] == ["failed", "failed", "success"]
    assert [a.get("error_type") for a in attempts] == ["FileNotFoundError",
                                                       "FileNotFoundError", None]
    assert attempts[0]["message"] == "FileNotFoundError: attempt 1 fails"
    assert all(a["manager"] and a["end"] >= a["start"] for a in attempts)
    assert "attempts" not in doc.get("details", {})
    assert fut.attempts == attempts  # the future carries them too


def test_task_status_shows_the_attempts(fxc, fxe, tmp_path):
    from typer.testing import CliRunner

    from funcx_cli.main import app

    fut = fxe.submit(flaky, str(tmp_path / "m"), 1, "os")
    assert fut.result(timeout=WAIT_S) == 2
    r = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["task", "status", fut.task_id])
    assert r.exit_code == 0, r.output
    assert "Attempts" in r.stdout and "2: FileNotFoundError, success" in r.stdout
    r = CliRunner().invoke(app, ["task", "status", fut.task_id, "--format", "json"])
    [row] = json.loads(r.stdout)
    assert [a["n"] for a in row["attempts"]] == [1, 2]


def test_an_exception_not_in_retry_on_is_not_retried(fxc, fxe, tmp_path):
    d = tmp_path / "m"
    fut = fxe.submit(flaky, str(d), 2, "value")
    with pytest.raises(ValueError, match="attempt 1 fails"):
        fut.result(timeout=WAIT_S)
    assert markers(d) == 1
    [only] = fxc.get_task(fut.task_id)["attempts"]
    assert only["error_type"] == "ValueError" and only["n"] == 1


def test_exhausted_retries_raise_the_last_error_with_every_attempt(fxc, fxe, tmp_path):
    d = tmp_path / "m"
    fut = fxe.options(retries=1).submit(flaky, str(d), 5, "os")  # per task: 1, not 2
    with pytest.raises(FileNotFoundError, match="attempt 2 fails"):
        fut.result(timeout=WAIT_S)
    assert markers(d) == 2
    attempts = fxc.get_task(fut.task_id)["attempts"]
    assert [a["message"] for a in attempts] == ["FileNotFoundError: attempt 1 fails",
                                                "FileNotFoundError: attempt 2 fails"]
    err = fut.exception()
    assert err.attempts == attempts  # on the raised error too, and said in a note:
    assert "this task ran 2 times; earlier runs ended with:\n  attempt 1: FileNotFoundError: " \
           "attempt 1 fails" in "\n".join(err.__notes__)
    # options() leaves the executor's own policy and the function's keywords alone
    assert fxe.retry_policy == {"retries": 2, "retry_on": ["OSError"]}


def test_client_run_and_batches_carry_a_policy(fxc, retry_ep, tmp_path):
    fid = fxc.register_function(flaky)
    d1, d2 = tmp_path / "a", tmp_path / "b"
    tid = fxc.run(str(d1), 1, "value", endpoint_id=retry_ep, function_id=fid, retries=1,
                  retry_on=["ValueError"])
    d3, d4 = tmp_path / "c", tmp_path / "d"
    batch = fxc.create_batch(retries=3)  # any exception
    batch.add(str(d2), 3, "value", endpoint_id=retry_ep, function_id=fid)
    batch.add(fid, retry_ep, args=(str(d3), 1, "value"), retries=0)  # its own: none
    batch.add(fid, retry_ep, args=(str(d4), 1, "os"), retries=1, retry_on=OSError)
    tid2, tid3, tid4 = fxc.batch_run(batch)
    fxc.wait([tid, tid2, tid3, tid4], timeout=WAIT_S)
    assert fxc.get_result(tid) == 2 and fxc.get_result(tid2) == 4 and fxc.get_result(tid4) == 2
    assert len(fxc.get_task(tid2)["attempts"]) == 4
    with pytest.raises(ValueError, match="attempt 1 fails"):
        fxc.get_result(tid3)
    assert "attempts" not in fxc.get_task(tid3) and markers(d3) == 1


def test_a_worker_killed_mid_task_is_rerun_per_the_endpoint_setting(fxc, retry_ep, tmp_path):
    from funcx import FuncXExecutor

    with FuncXExecutor(endpoint_id=retry_ep, client=fxc) as ex:  # no policy of its own
        once, always = tmp_path / "once", tmp_path / "always"
        f1 = ex.submit(die_until, str(once), 1)
        f2 = ex.submit(die_until, str(always), 10)
        assert f1.result(timeout=WAIT_S) == 2
        with pytest.raises(WorkerLost):
            f2.result(timeout=WAIT_S)
    assert markers(once) == 2
    assert markers(always) == 2  # max_retries_on_system_failure=1: two attempts in all
    a1 = fxc.get_task(f1.task_id)["attempts"]
    assert [a.get("error_type") for a in a1] == ["WorkerLost", None]
    a2 = fxc.get_task(f2.task_id)["attempts"]
    assert [a["error_type"] for a in a2] == ["WorkerLost", "WorkerLost"]


def test_other_tenants_tasks_are_unaffected(fxc, tenant, fxe, retry_ep, tmp_path):
    fid = tenant.register_function(square)
    d = tmp_path / "m"
    mine = fxe.submit(flaky, str(d), 2, "os")
    theirs = tenant.map_run(range(8), endpoint_id=retry_ep, function_id=fid)
    tenant.wait(theirs, timeout=WAIT_S)
    assert [tenant.get_result(t) for t in theirs] == [x * x for x in range(8)]
    assert all("attempts" not in tenant.get_task(t) for t in theirs)
    assert mine.result(timeout=WAIT_S) == 3


def test_bad_policies_are_refused_with_their_code_and_nothing_is_queued(http, fxc, retry_ep):
    from funcx.protocol import error_codes

    fid = fxc.register_function(square)
    payload = fxc.fx_serializer.serialize_payload((3,), {})
    for policy in ({"retries": 101}, {"retries": "2"}, {"retries": 1, "retry_on": ["a b"]},
                   {"retries": 1, "retry_on": ["E"] * 33}, {"retries": 1, "then": "what"}):
        r = http.post(f"{http.base_url}/v3/endpoints/{retry_ep}/submit",
                      json={"tasks": {fid: [payload]}, "retry_policy": policy})
        assert r.status_code == 400, (policy, r.text)
        assert r.json()["code"] == error_codes.RETRY_POLICY_INVALID, r.json()
    from funcx import FuncXExecutor

    with pytest.raises(ValueError, match="retries must be"):
        FuncXExecutor(endpoint_id=retry_ep, client=fxc, retries=-1)
    with pytest.raises(TypeError, match="exception classes"):
        fxc.create_batch(retries=1, retry_on=[3])
