"""The reliability promises, each under a real fault injected mid-flight.

Every test runs its own service and endpoint (see conftest.py), submits a
batch of >= 1,000 tasks (0-20 ms each, ~1% raising ValueError on purpose),
injects one fault once a good share of the results has arrived (awaited
through the task group's completion events, never by sleeping), waits for
every task (bounded), and then inspects Redis directly: every task terminal,
exactly one completion event per task, every result right, every failure of
the right type.  Each test adds a row to the fault table (conftest.py).
"""
from __future__ import annotations

import os
import random
import signal
import threading
import time

import psutil
import pytest
from faultlib import FaultBatch, hog, sigkill, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(300)]

N = int(os.environ.get("FUNCX_FAULT_TASKS", "1000"))
SHARE = 0.3  # the fault comes once this share of the batch has finished


def first_share(tids):
    return tids[: int(len(tids) * SHARE)]


def test_agent_killed_and_restarted(make_fabric):
    fab = make_fabric()
    fb = FaultBatch(fab, "kill -9 the agent, restart it", N)
    tids = fb.submit(fb.items)
    fb.wait_share(first_share(tids))
    old = fab.agent_pid()
    os.kill(old, signal.SIGKILL)
    fb.fault_now()
    try:
        psutil.Process(old).wait(10)
    except psutil.NoSuchProcess:
        pass
    fab.start_endpoint()  # detects the stale pid file; the same endpoint id
    assert fab.agent_pid() != old
    fb.wait_all()
    fb.verify()


def test_manager_killed(make_fabric):
    fab = make_fabric()
    fb = FaultBatch(fab, "kill -9 a manager", N)
    tids = fb.submit(fb.items)
    fb.wait_share(first_share(tids))
    [mgr] = fab.managers()
    mgr.kill()
    fb.fault_now()
    fb.wait_all()
    fb.verify()
    assert mgr.pid not in {m.pid for m in fab.managers()}


def test_random_workers_killed(make_fabric):
    from funcx.errors import WorkerLost

    fab = make_fabric()
    fb = FaultBatch(fab, "kill -9 random workers", N)
    tids = fb.submit(fb.items)
    rng = random.Random(7)
    killed = []
    for k, share in enumerate((0.25, 0.5, 0.75)):
        fb.wait_share(tids[: int(len(tids) * share)])
        victims = rng.sample(fab.wait_workers(4), 2)
        killed += sigkill(victims)
        if k == 0:
            fb.fault_now()
    fb.wait_all()
    # a worker that dies fails only the task it ran, with WorkerLost (not retried:
    # the task may be the cause); every other task is unaffected
    fb.verify(allowed_anywhere=(WorkerLost,), max_anywhere=len(killed), workers_killed=len(killed))


def test_web_workers_killed_mid_submission(make_fabric):
    fab = make_fabric()
    fb = FaultBatch(fab, "kill -9 every web worker", N)
    first, rest = fb.items[: N // 2], fb.items[N // 2:]
    tids = fb.submit(first, chunk=50)
    fb.wait_share(first_share(tids))
    submitting = threading.Event()
    errors: list[BaseException] = []

    chunks = -(-len(rest) // 25)
    before = fb.fxc.web_client.request_count

    def go():
        try:
            fb.submit(rest, chunk=25, after_chunk=lambda k: k == 2 and submitting.set())
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            submitting.set()

    t = threading.Thread(target=go)
    t.start()
    assert submitting.wait(60)
    workers = fab.web_workers()
    killed = sigkill(workers)
    t0 = fb.fault_now()
    # gunicorn respawns its workers: only asking tells when one answers again
    assert wait_until(lambda: _answers(fab.url), timeout=60)
    web_back = time.time() - t0
    t.join(120)
    assert not t.is_alive() and not errors, errors  # the client retried, it did not give up
    retries = fb.fxc.web_client.request_count - before - chunks
    fb.wait_all()
    fb.verify(web_workers_killed=len(killed), web_answers_again_s=round(web_back, 2),
              submit_retries=retries)
    assert not {p.pid for p in fab.web_workers()} & set(killed)  # respawned by gunicorn


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/v2/version", timeout=2).ok
    except requests.RequestException:
        return False


def test_service_restarted(make_fabric):
    from funcx import FuncXExecutor

    fab = make_fabric()
    fb = FaultBatch(fab, "restart the service (stop, start)", N)
    first, rest = fb.items[: N // 2], fb.items[N // 2:]
    tids = fb.submit(first)
    fb.wait_share(first_share(tids))
    ex = FuncXExecutor(endpoint_id=fab.eid, task_group_id=fb.tg, client=fb.fxc)
    agent = fab.agent_pid()
    try:
        fb.mark_progress()
        fab.stop_service()
        fb.fault_now()  # the service is down
        # the executor takes submissions while the service is down, and sends
        # them once it is back
        futures = fb.submit_with_executor(ex, rest)
        fab.start_service()  # the same port
        fb.restored_now()
        fb.adopt(futures, rest)
        fb.wait_all()
        done = [f.exception(30) for f in futures]
        assert sum(isinstance(e, ValueError) for e in done) == sum(it[2] for it in rest)
    finally:
        ex.shutdown(wait=False, cancel_futures=False)
    fb.verify()
    assert fab.agent_pid() == agent  # the same agent reconnected


def test_redis_restarted_with_aof(make_fabric):
    fab = make_fabric(env={"FUNCX_REDIS_APPENDFSYNC": "always"})
    fb = FaultBatch(fab, "restart Redis (AOF, appendfsync always)", N)
    tids = fb.submit(fb.items)
    fb.wait_share(first_share(tids))
    old, agent = fab.redis_server(), fab.agent_pid()
    fb.mark_progress()
    old.kill()
    fb.fault_now()
    # the supervisor restarts redis-server from its AOF: only polling can tell
    assert wait_until(lambda: _restarted(fab, old.pid), timeout=30)
    fb.restored_now()
    fb.wait_all()
    fb.verify()
    assert fab.agent_pid() == agent  # the same agent reconnected


def _restarted(fab, old_pid):
    try:
        return fab.redis_server().pid != old_pid and fab.redis().ping()
    except Exception:  # noqa: BLE001 - not yet
        return False


def test_endpoint_offline_then_back(make_fabric):
    offline_s = float(os.environ.get("FUNCX_FAULT_OFFLINE_S", "60"))
    fab = make_fabric()
    fb = FaultBatch(fab, f"endpoint offline {offline_s:g} s", N)
    first, rest = fb.items[: N // 2], fb.items[N // 2:]
    tids = fb.submit(first)
    fb.wait_share(first_share(tids))
    fb.mark_progress()
    fab.stop_endpoint()
    fb.fault_now()  # the endpoint is down
    assert fb.fxc.get_endpoint_status(fab.eid)["status"] == "offline"
    later = fb.submit(rest)  # accepted while the endpoint is offline: they wait for it
    status = fb.fxc.get_batch_result(later[:50])
    assert {s["status"] for s in status.values()} == {"waiting-for-ep"}, status
    threading.Event().wait(offline_s)  # the outage itself (part of the spec)
    fab.start_endpoint()
    fb.restored_now()
    fb.wait_all()
    fb.verify()


def test_worker_oom(make_fabric):
    from funcx.errors import WorkerLost

    fab = make_fabric(endpoint_options={"mem_per_worker": 0.5})
    fb = FaultBatch(fab, "worker memory exhausted (RLIMIT_AS 0.5 GB)", N)
    tids = fb.submit(fb.items)
    fb.wait_share(first_share(tids))
    fb.fault_now()  # from the moment the memory hogs are submitted
    victims = fb.submit_special(hog, range(8), (MemoryError, WorkerLost))
    fb.wait_all()
    row = fb.verify(victims=len(victims))
    assert row.submitted == N + len(victims)
