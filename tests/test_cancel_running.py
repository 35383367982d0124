"""Stop anything (issue 16, point 2) on a real endpoint: a running task is
cancelled at the service, and its endpoint kills the worker process running it
(with the processes the function started), starts a replacement, and never
runs it again, not even after a restart; a task cancelled while its endpoint
is stopped never runs when it comes back.

Real parts: the session's service (Flask, Redis, ingester), an endpoint
daemon of this module's own (so it can be stopped and started), its
managers and workers as processes.  Each function writes a side-effect file
when it starts, so "it ran (again)" or "it never ran" is seen on disk."""
from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest
from faults.faultlib import wait_until

from funcx.protocol import keys
from tests.live import another_user, running_endpoint

ENDPOINT = "pytest-cancel"
#: the tests that stop and start the endpoint run in the slow step
restarts = pytest.mark.slow


# ------------------------------------------------------------ remote functions
def sleeper(path, seconds):
    """Note this worker's pid in ``path``, then sleep."""
    import os
    import time

    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "finished"


def spawner(path):
    """Start a child that would outlive a worker killed alone; note both pids."""
    import os
    import subprocess
    import sys
    import time

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(path, "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    time.sleep(600)


def touch(path):
    with open(path, "a") as f:
        f.write("ran\n")
    return "ran"


# ----------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def cancel_ep(service):
    """A public endpoint of two workers that this module may stop and start
    (public: another user's tasks run beside ours)."""
    with running_endpoint(ENDPOINT, 2, public=True) as eid:
        yield eid


@pytest.fixture(scope="module")
def tenant(service, redis_client):
    """A client of a second user."""
    return another_user(redis_client, "tenant")


@pytest.fixture(scope="module")
def fns(fxc):
    return {f.__name__: fxc.register_function(f) for f in (sleeper, spawner, touch)}


def workers() -> list[psutil.Process]:
    """The live worker processes of this module's endpoint."""
    from endpoint.daemon import running_pid
    from endpoint.paths import EndpointDir

    pid = running_pid(EndpointDir(ENDPOINT))
    if pid is None:
        return []
    try:
        found = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in found:
        try:
            if "endpoint.worker" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            pass
    return out


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def status(fxc, tid: str) -> str:
    return fxc.get_task(tid)["status"]


def events_of(redis_client, tid: str) -> list[str]:
    """The completion events of one task in its group's events stream."""
    tg = redis_client.hget(keys.task(tid), "task_group_id")
    entries = redis_client.xrange(keys.task_group_events(tg))
    return [f["status"] for _, f in entries if f.get("task_id") == tid]


def read_when_written(path: Path, timeout: float = 60) -> str:
    assert wait_until(lambda: path.exists() and path.read_text().strip(), timeout), \
        f"{path.name} was never written: the task did not start"
    return path.read_text().strip()


def restart(eid: str) -> None:
    from endpoint import daemon

    daemon.stop(ENDPOINT)
    assert daemon.start(ENDPOINT) == eid


def probe(fxc, fns, eid: str, tmp_path: Path, name: str) -> None:
    """Run a task to its end: the endpoint has read its stream past anything
    submitted before."""
    tid = fxc.run(str(tmp_path / name), endpoint_id=eid, function_id=fns["touch"])
    assert fxc.wait([tid], timeout=60)[tid]["status"] == "success"


# ------------------------------------------------------------------- tests
@restarts
def test_cancelling_running_tasks_kills_their_workers_and_children(
        fxc, fns, cancel_ep, redis_client, tmp_path):
    """A running sleep(600) and a running task with a child process share one
    submit (one stream entry) with nothing else; both are cancelled: both
    workers and the child die, replacements serve the next tasks, each task
    is `cancelled` with exactly one completion event, and a restart of the
    endpoint runs neither again."""
    a, b = tmp_path / "a", tmp_path / "b"
    batch = fxc.create_batch()
    batch.add(str(a), 600, endpoint_id=cancel_ep, function_id=fns["sleeper"])
    batch.add(str(b), endpoint_id=cancel_ep, function_id=fns["spawner"])
    ta, tb = fxc.batch_run(batch)
    worker_a = int(read_when_written(a))
    worker_b, child = map(int, read_when_written(b).split())
    assert wait_until(lambda: status(fxc, ta) == "running" == status(fxc, tb), 30)

    queued = fxc.run(str(tmp_path / "q"), endpoint_id=cancel_ep, function_id=fns["touch"])
    # both workers busy: queued at a live endpoint, waiting for a worker (point 3)
    assert wait_until(lambda: status(fxc, queued) == "waiting-for-launch", 30), \
        fxc.get_task(queued)

    assert fxc.cancel([ta, tb]) == {ta: True, tb: True}
    assert status(fxc, ta) == "cancelled" == status(fxc, tb)
    assert wait_until(lambda: gone(worker_a) and gone(worker_b) and gone(child), 30), \
        "a cancelled task's worker or its child is still alive"

    # the replacement workers serve what was queued and what comes next
    assert fxc.wait([queued], timeout=60)[queued]["status"] == "success"
    probe(fxc, fns, cancel_ep, tmp_path, "after")
    live = {p.pid for p in workers()}
    assert len(live) == 2 and not live & {worker_a, worker_b}

    assert events_of(redis_client, ta) == ["cancelled"]
    assert events_of(redis_client, tb) == ["cancelled"]
    rec = redis_client.hgetall(keys.task(ta))
    assert rec["status"] == "cancelled" and "it was running" in rec["reason"]

    a.unlink()
    b.unlink()
    restart(cancel_ep)
    probe(fxc, fns, cancel_ep, tmp_path, "after-restart")
    assert not a.exists() and not b.exists(), "a restarted endpoint ran a cancelled task"
    assert status(fxc, ta) == "cancelled" == status(fxc, tb)
    assert events_of(redis_client, ta) == ["cancelled"]


@restarts
def test_a_cancelled_task_sharing_an_entry_with_a_running_one_is_not_rerun(
        fxc, fns, cancel_ep, tmp_path):
    """One submit of two long tasks; one is cancelled, the other still runs
    when the endpoint restarts: the stream entry is read again and its
    unfinished task runs again (at-least-once), the cancelled one does not;
    the other tasks on the endpoint are untouched by the cancel."""
    keep, victim = tmp_path / "keep", tmp_path / "victim"
    batch = fxc.create_batch()
    batch.add(str(keep), 600, endpoint_id=cancel_ep, function_id=fns["sleeper"])
    batch.add(str(victim), 600, endpoint_id=cancel_ep, function_id=fns["sleeper"])
    tkeep, tvictim = fxc.batch_run(batch)
    keep_pid = int(read_when_written(keep))
    victim_pid = int(read_when_written(victim))

    assert fxc.cancel_task(tvictim) is True
    assert wait_until(lambda: gone(victim_pid), 30)
    assert not gone(keep_pid) and status(fxc, tkeep) == "running"  # its neighbour runs on
    probe(fxc, fns, cancel_ep, tmp_path, "between")  # on the victim's replacement

    keep.unlink()
    victim.unlink()
    restart(cancel_ep)
    read_when_written(keep)  # the unfinished task of the entry runs again ...
    probe(fxc, fns, cancel_ep, tmp_path, "after-restart")
    assert not victim.exists(), "a restarted endpoint ran a cancelled task again"
    assert fxc.cancel_task(tkeep) is True
    assert fxc.cancel_task(tkeep) is False  # already cancelled: recorded once


@restarts
def test_cancel_while_the_endpoint_is_stopped_is_honoured_when_it_starts(
        fxc, fns, cancel_ep, http, tmp_path):
    """A task running when its endpoint stops, and one submitted while it is
    stopped, are shown as waiting on an offline endpoint, cancelled while it
    is stopped, and never run when it starts again."""
    from endpoint import daemon

    running, queued = tmp_path / "running", tmp_path / "queued"
    t_running = fxc.run(str(running), 600, endpoint_id=cancel_ep, function_id=fns["sleeper"])
    read_when_written(running)
    daemon.stop(ENDPOINT)
    stopped = time.time()
    try:
        t_queued = fxc.run(str(queued), endpoint_id=cancel_ep, function_id=fns["touch"])
        for tid in (t_running, t_queued):  # never "running" on a stopped endpoint (point 3)
            doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
            assert doc["status"] == "waiting-for-ep", doc
            assert doc["details"]["endpoint_status"] == "offline", doc
        doc = http.get(f"{http.base_url}/v2/tasks/{t_running}").json()
        assert doc["details"]["last_status"] == "running", doc
        (offline,) = doc["details"]["problems"]  # since its agent's last heartbeat
        assert offline["kind"] == "endpoint_offline", offline
        assert stopped - 5 <= offline["since"] <= stopped, (offline, stopped)
        assert fxc.cancel([t_running, t_queued]) == {t_running: True, t_queued: True}
        running.unlink()
    finally:
        daemon.start(ENDPOINT)
    probe(fxc, fns, cancel_ep, tmp_path, "after-start")
    assert not running.exists() and not queued.exists(), "a cancelled task ran"
    assert status(fxc, t_running) == "cancelled" == status(fxc, t_queued)


def test_an_executor_future_of_a_running_task_is_cancelled(fxc, cancel_ep, tmp_path):
    """``future.cancel()`` on a task that runs remotely asks the service: it
    answers True, the future ends cancelled (``CancelledError``), the worker
    is killed, and the executor goes on with the next task."""
    import concurrent.futures as cf

    from funcx import FuncXExecutor

    started = tmp_path / "started"
    with FuncXExecutor(endpoint_id=cancel_ep, client=fxc) as ex:
        fut = ex.submit(sleeper, str(started), 600)
        pid = int(read_when_written(started))
        assert fut.cancel() is True
        assert fut.cancelled()
        with pytest.raises(cf.CancelledError):
            fut.result(timeout=5)
        assert wait_until(lambda: gone(pid), 30), "the cancelled future's worker lives on"
        assert ex.submit(touch, str(tmp_path / "next")).result(timeout=60) == "ran"
    assert status(fxc, fut.task_id) == "cancelled"
    assert fut.cancel() is True  # still cancelled; nothing asked again


def test_a_future_whose_task_is_cancelled_elsewhere_ends_cancelled(fxc, cancel_ep, tmp_path):
    """Cancelled by someone else (the CLI, another client) while an executor
    waits for it: the future ends cancelled instead of waiting forever."""
    import concurrent.futures as cf

    from funcx import FuncXExecutor

    started = tmp_path / "started"
    with FuncXExecutor(endpoint_id=cancel_ep, client=fxc) as ex:
        fut = ex.submit(sleeper, str(started), 600)
        read_when_written(started)
        assert fxc.cancel_task(fut.task_id) is True
        with pytest.raises(cf.CancelledError):
            fut.result(timeout=30)
        assert fut.cancelled()


def test_shutdown_cancel_futures_stops_running_tasks_too(fxc, cancel_ep, tmp_path):
    """A FuncXFuture is pending until its result arrives, so
    ``shutdown(cancel_futures=True)`` cancels a running task as well."""
    from funcx import FuncXExecutor

    started = tmp_path / "started"
    ex = FuncXExecutor(endpoint_id=cancel_ep, client=fxc)
    fut = ex.submit(sleeper, str(started), 600)
    pid = int(read_when_written(started))
    ex.shutdown(wait=True, cancel_futures=True)
    assert fut.cancelled() and status(fxc, fut.task_id) == "cancelled"
    assert wait_until(lambda: gone(pid), 30)


def test_the_cli_cancels_a_running_task(fxc, fns, cancel_ep, tmp_path):
    """``funcx task cancel ID`` on a running task: reported cancelled (exit 0),
    its worker killed; again: not cancelled, it had finished (exit 1)."""
    import subprocess
    import sys

    started = tmp_path / "started"
    tid = fxc.run(str(started), 600, endpoint_id=cancel_ep, function_id=fns["sleeper"])
    pid = int(read_when_written(started))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args],
                              capture_output=True, text=True, timeout=120, env=dict(os.environ))

    p = cli("task", "cancel", tid)
    assert p.returncode == 0 and f"{tid}: cancelled" in p.stdout, (p.stdout, p.stderr)
    assert wait_until(lambda: gone(pid), 30), "the worker of a task cancelled by the CLI lives on"
    p = cli("task", "cancel", tid)
    assert p.returncode == 1 and "not cancelled" in p.stdout, (p.stdout, p.stderr)


def test_another_users_task_beside_a_cancelled_one_completes(
        fxc, fns, tenant, cancel_ep, tmp_path):
    """Two users' tasks run side by side on one manager; cancelling one kills
    only its worker: the other user's task runs on to its result."""
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    nap = tenant.register_function(sleeper)
    t_theirs = tenant.run(str(theirs), 3, endpoint_id=cancel_ep, function_id=nap)
    t_mine = fxc.run(str(mine), 600, endpoint_id=cancel_ep, function_id=fns["sleeper"])
    their_pid, my_pid = int(read_when_written(theirs)), int(read_when_written(mine))
    assert fxc.cancel_task(t_mine) is True
    assert wait_until(lambda: gone(my_pid), 30)
    assert not gone(their_pid)
    assert tenant.wait([t_theirs], timeout=60)[t_theirs]["status"] == "success"
    assert tenant.get_result(t_theirs) == "finished"
    assert status(fxc, t_mine) == "cancelled"


def test_workers_lead_their_own_process_group(cancel_ep):
    """What makes a kill reach a function's children: each worker is its own
    process group."""
    ws = wait_until(lambda: (lambda w: w if len(w) == 2 else None)(workers()), 30)
    assert ws
    assert all(os.getpgid(w.pid) == w.pid for w in ws)
