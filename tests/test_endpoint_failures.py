"""Failure handling of the endpoint, with real processes and no mocks.

Every test runs its OWN endpoint (its own config.py, daemon, interchange,
managers and workers) so the session's shared ``endpoint`` is never disturbed,
and then kills real processes: workers (SIGKILL, ``os._exit``), managers
(SIGKILL), the agent itself (SIGKILL), tasks past their walltime.

Synchronisation is by events wherever one exists: a task tells the test it has
started (and which process runs it) by writing its pid into a named pipe the
test is reading; tasks wait on a second pipe until the test releases them;
results are awaited with ``fxc.wait`` (push); process deaths with
``psutil.Process.wait``.  Only what nothing but a periodic heartbeat can tell
(the endpoint's status document) is awaited by a bounded loop.

Functions sent to endpoints travel as source code: each is self-contained.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from funcx.errors import ManagerLost, TaskTimeout, WorkerLost

WAIT_S = 60


# ------------------------------------------------------------- remote functions
def hold(fifo):
    """Say which process runs this task (through the FIFO), then hang."""
    import os
    import time

    with open(fifo, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
    return "not killed"


def hold_once(fifo, marker):
    """Hang on the first run; on a re-run (after its manager was lost) return
    who ran it."""
    import os
    import time

    if os.path.exists(marker):
        return ["rerun", os.getpid(), os.getppid()]
    open(marker, "w").close()
    with open(fifo, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(60)
    return "first run finished"


def gate(started, release):
    """Say it started (pid through ``started``), then wait to be released."""
    import os

    with open(started, "w") as f:
        f.write(str(os.getpid()))
    with open(release) as f:
        word = f.read()
    return "released:" + word


def square_pid(x):
    import os

    return [x * x, os.getpid()]


def exit_now(code):
    import os

    os._exit(code)


def nap(i, seconds):
    import time

    time.sleep(seconds)
    return i * i


def sleep_for(seconds, pidfile):
    import os
    import time

    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return "woke up"


# -------------------------------------------------------------------- helpers
CONFIG = """from parsl.providers import LocalProvider

from endpoint.config import Config

config = Config(
    provider=LocalProvider(init_blocks={init_blocks}, min_blocks={min_blocks},
                           max_blocks={max_blocks}),
    max_workers_per_node={workers},
    heartbeat_period=0.5,
    heartbeat_threshold=3,
{extra})
"""


def write_config(name: str, *, init_blocks=1, min_blocks=0, max_blocks=1, workers=2,
                 **options) -> Path:
    from endpoint.paths import EndpointDir

    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, exist_ok=True, mode=0o700)
    extra = "".join(f"    {k}={v!r},\n" for k, v in options.items())
    ep.config_file.write_text(CONFIG.format(init_blocks=init_blocks, min_blocks=min_blocks,
                                            max_blocks=max_blocks, workers=workers, extra=extra))
    return ep.config_file


@contextmanager
def own_endpoint(fxc, tag: str, **config):
    """A freshly configured endpoint, started, and stopped (and deleted) after."""
    from endpoint import daemon
    from endpoint.paths import EndpointDir

    name = f"fail-{tag}-{uuid.uuid4().hex[:6]}"
    write_config(name, **config)
    eid = daemon.start(name)
    try:
        yield SimpleNamespace(name=name, eid=eid, dir=EndpointDir(name))
    except BaseException:  # show what the endpoint saw, for the failure report
        print(f"--- {EndpointDir(name).log_file} ---\n{EndpointDir(name).log_file.read_text()[-6000:]}")
        raise
    finally:
        daemon.stop(name)
        try:
            fxc.delete_endpoint(eid)
        except Exception:
            pass


def _fifo_io(path: Path, mode: str, data: str, timeout: float) -> str:
    """Open a FIFO and read it to EOF (mode "r") or write ``data`` (mode "w"),
    blocking until the other side shows up, but never past ``timeout``."""
    out: dict = {}

    def run():
        with open(path, mode) as f:
            if mode == "r":
                out["data"] = f.read()
            else:
                f.write(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():  # unblock our own open() so the thread ends, then fail
        other = os.O_WRONLY if mode == "r" else os.O_RDONLY
        try:
            os.close(os.open(path, other | os.O_NONBLOCK))
        except OSError:
            pass
        t.join(5)
        raise AssertionError(f"nobody opened the other end of {path} within {timeout}s")
    return out.get("data", "")


def read_fifo(path: Path, timeout: float = WAIT_S) -> str:
    return _fifo_io(path, "r", "", timeout)


def write_fifo(path: Path, data: str = "", timeout: float = WAIT_S) -> None:
    _fifo_io(path, "w", data, timeout)


def fifo(tmp_path: Path, name: str) -> Path:
    p = tmp_path / name
    os.mkfifo(p)
    return p


def outcome(fxc, tid: str):
    """The task's result, or the exception get_result raises."""
    try:
        return fxc.get_result(tid)
    except Exception as e:  # noqa: BLE001 - the exception is the outcome under test
        return e


def wait_until(predicate, timeout: float = 15.0, step: float = 0.2):
    """Bounded wait for what only a periodic heartbeat can tell."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        pause.wait(step)


def manager_of(worker_pid: int) -> psutil.Process:
    mgr = psutil.Process(worker_pid).parent()
    assert mgr is not None and "endpoint.manager" in " ".join(mgr.cmdline())
    return mgr


def _dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited, not yet reaped
    except psutil.NoSuchProcess:
        return True


def gone(pids, timeout: float = 10.0) -> bool:
    """Bounded wait for processes (not necessarily our children) to exit."""
    return bool(wait_until(lambda: all(_dead(p) for p in pids), timeout=timeout, step=0.05))


@pytest.fixture(scope="module")
def fns(fxc):
    return {f.__name__: fxc.register_function(f) for f in (
        hold, hold_once, gate, square_pid, exit_now, nap, sleep_for)}


# ---------------------------------------------------------------- 1. workers
def test_killed_worker_fails_only_its_task(fxc, fns, tmp_path):
    pipe = fifo(tmp_path, "victim")
    # no re-run of a task whose worker died (tests/test_task_retries.py has those)
    with own_endpoint(fxc, "worker", max_retries_on_system_failure=0) as ep:
        batch = fxc.create_batch()
        batch.add(str(pipe), endpoint_id=ep.eid, function_id=fns["hold"])
        for x in range(4):
            batch.add(x, endpoint_id=ep.eid, function_id=fns["square_pid"])
        victim, *before = fxc.batch_run(batch)

        worker_pid = int(read_fifo(pipe))  # the victim task is running in this process
        mgr = manager_of(worker_pid)
        os.kill(worker_pid, signal.SIGKILL)

        done = fxc.wait([victim, *before], timeout=WAIT_S)
        assert done[victim]["status"] == "failed"
        err = outcome(fxc, victim)
        assert isinstance(err, WorkerLost), repr(err)
        assert "exit signal 9" in str(err)
        assert [outcome(fxc, t)[0] for t in before] == [0, 1, 4, 9]

        # the manager replaced the worker before it reported the loss
        workers = [p for p in mgr.children() if "endpoint.worker" in " ".join(p.cmdline())]
        assert len(workers) == 2 and worker_pid not in {p.pid for p in workers}

        after = fxc.map_run(range(10, 16), endpoint_id=ep.eid, function_id=fns["square_pid"])
        fxc.wait(after, timeout=WAIT_S)
        results = [outcome(fxc, t) for t in after]
        assert [r[0] for r in results] == [x * x for x in range(10, 16)]
        assert worker_pid not in {r[1] for r in results}
        assert mgr.is_running()  # the same manager carried on


def test_worker_exiting_by_itself_fails_only_its_task(fxc, fns):
    # no re-run of a task whose worker died (tests/test_task_retries.py has those)
    with own_endpoint(fxc, "exit", max_retries_on_system_failure=0) as ep:
        batch = fxc.create_batch()
        batch.add(3, endpoint_id=ep.eid, function_id=fns["exit_now"])
        for x in (2, 5, 7):
            batch.add(x, endpoint_id=ep.eid, function_id=fns["square_pid"])
        dying, *others = fxc.batch_run(batch)
        fxc.wait([dying, *others], timeout=WAIT_S)

        err = outcome(fxc, dying)
        assert isinstance(err, WorkerLost), repr(err)
        assert "exit status 3" in str(err)
        assert [outcome(fxc, t)[0] for t in others] == [4, 25, 49]

        again = fxc.map_run([8, 9], endpoint_id=ep.eid, function_id=fns["square_pid"])
        fxc.wait(again, timeout=WAIT_S)
        assert [outcome(fxc, t)[0] for t in again] == [64, 81]


# --------------------------------------------------------------- 2. managers
@pytest.mark.slow
def test_killed_manager_tasks_are_redispatched(fxc, fns, tmp_path):
    pipes = [fifo(tmp_path, f"m{i}") for i in range(2)]
    with own_endpoint(fxc, "mgr-retry", task_retries_on_manager_lost=1) as ep:
        batch = fxc.create_batch()
        for i, p in enumerate(pipes):
            batch.add(str(p), str(tmp_path / f"marker{i}"), endpoint_id=ep.eid,
                      function_id=fns["hold_once"])
        tids = fxc.batch_run(batch)
        worker_pids = [int(read_fifo(p)) for p in pipes]  # both workers busy
        mgr = manager_of(worker_pids[0])
        assert manager_of(worker_pids[1]).pid == mgr.pid

        mgr.kill()
        assert gone([mgr.pid]) and gone(worker_pids), "workers outlived their SIGKILLed manager"

        fxc.wait(tids, timeout=WAIT_S)
        reruns = [outcome(fxc, t) for t in tids]
        for r in reruns:
            assert isinstance(r, list) and r[0] == "rerun", repr(r)
            assert r[2] != mgr.pid  # a new manager (a new block) ran it
        new_mgr = psutil.Process(reruns[0][2])
        assert "endpoint.manager" in " ".join(new_mgr.cmdline())


@pytest.mark.slow
def test_killed_manager_without_retries_fails_with_manager_lost(fxc, fns, tmp_path):
    pipe = fifo(tmp_path, "m")
    with own_endpoint(fxc, "mgr-lost", task_retries_on_manager_lost=0) as ep:
        [tid] = fxc.batch_run(_one(fxc, ep.eid, fns["hold"], str(pipe)))
        mgr = manager_of(int(read_fifo(pipe)))
        mgr.kill()

        fxc.wait([tid], timeout=WAIT_S)
        err = outcome(fxc, tid)
        assert isinstance(err, ManagerLost), repr(err)
        assert "declared lost" in str(err)

        later = fxc.map_run([3, 4], endpoint_id=ep.eid, function_id=fns["square_pid"])
        fxc.wait(later, timeout=WAIT_S)
        assert [outcome(fxc, t)[0] for t in later] == [9, 16]


def _one(fxc, eid, fid, *args, **spec):
    batch = fxc.create_batch(resource_specification=spec or None)
    batch.add(*args, endpoint_id=eid, function_id=fid)
    return batch


# ------------------------------------------------------------------ 3. agent
@pytest.mark.slow
def test_killed_agent_restarts_and_loses_no_task(fxc, fns, redis_client):
    from endpoint import daemon
    from funcx.protocol import keys

    with own_endpoint(fxc, "agent", workers=2) as ep:
        agent_pid = int(ep.dir.pid_file.read_text())
        old_managers = wait_until(lambda: [
            m["pid"] for m in fxc.get_endpoint_status(ep.eid)["details"].get("manager_details", [])])
        assert old_managers, "the endpoint never reported its manager"

        tg = str(uuid.uuid4())
        batch = fxc.create_batch(task_group_id=tg)
        durations = [(i * 7 % 6) / 10 for i in range(50)]  # 0 .. 0.5 s
        for i, d in enumerate(durations):
            batch.add(i, d, endpoint_id=ep.eid, function_id=fns["nap"])
        tids = fxc.batch_run(batch)
        fxc.wait(tids[:1], timeout=WAIT_S)  # work is flowing

        os.kill(agent_pid, signal.SIGKILL)
        psutil.Process(agent_pid).wait(10)
        finished = sum(redis_client.hget(keys.task(t), "status") in ("success", "failed")
                       for t in tids)
        assert finished < len(tids), "everything finished before the kill: nothing was tested"
        assert ep.dir.pid_file.read_text().strip() == str(agent_pid)  # stale, left behind

        assert daemon.start(ep.name) == ep.eid  # detects the stale pid file, same id
        new_pid = int(ep.dir.pid_file.read_text())
        assert new_pid != agent_pid

        done = fxc.wait(tids, timeout=WAIT_S)
        bad = {t: repr(d.get("exception")) for t, d in done.items() if d["status"] != "success"}
        assert not bad, bad
        assert [fxc.get_result(t) for t in tids] == [i * i for i in range(50)]
        # exactly one terminal result per task, even if some ran twice
        events = redis_client.xrange(keys.task_group_events(tg))
        per_task = Counter(fields["task_id"] for _, fields in events)
        assert set(per_task) == set(tids) and set(per_task.values()) == {1}, per_task
        assert "reclaimed" in ep.dir.log_file.read_text()  # the restarted agent took them back
        # the orphaned managers noticed the silence and exited by themselves
        assert gone(old_managers, timeout=15)


# --------------------------------------------------------------- 4. walltime
@pytest.mark.slow  # a walltime runs out and a worker is replaced (~4 s): the slow CI step
def test_walltime_kills_the_task_and_the_worker_is_replaced(fxc, fns, tmp_path):
    with own_endpoint(fxc, "walltime", walltime=1.5) as ep:
        per_task = fxc.batch_run(_one(fxc, ep.eid, fns["sleep_for"], 30,
                                      str(tmp_path / "a.pid"), walltime=1))[0]
        by_config = fxc.batch_run(_one(fxc, ep.eid, fns["sleep_for"], 30,
                                       str(tmp_path / "b.pid")))[0]
        t0 = time.monotonic()
        fxc.wait([per_task, by_config], timeout=WAIT_S)
        assert time.monotonic() - t0 < 20  # not the 30 s the function wanted

        err = outcome(fxc, per_task)
        assert isinstance(err, TaskTimeout), repr(err)
        assert err.walltime == 1 and "walltime of 1 s" in str(err)
        err = outcome(fxc, by_config)
        assert isinstance(err, TaskTimeout), repr(err)
        assert err.walltime == 1.5

        killed = {int((tmp_path / f).read_text()) for f in ("a.pid", "b.pid")}
        assert gone(killed), "a worker past its walltime was not killed"
        quick = fxc.map_run([6, 7], endpoint_id=ep.eid, function_id=fns["square_pid"])
        fxc.wait(quick, timeout=WAIT_S)
        results = [outcome(fxc, t) for t in quick]
        assert [r[0] for r in results] == [36, 49]
        assert not killed & {r[1] for r in results}


# -------------------------------------------------------- 5. status, scaling
@pytest.mark.slow
def test_status_is_truthful_and_blocks_scale_out_and_in(fxc, fns, redis_client, tmp_path):
    from endpoint import daemon
    from funcx.protocol import keys

    block_gate = fifo(tmp_path, "gate")  # a block cannot start its manager until opened
    started, release = fifo(tmp_path, "started"), fifo(tmp_path, "release")
    with own_endpoint(fxc, "scale", init_blocks=0, min_blocks=0, max_blocks=1,
                      max_idletime=1, worker_init=f"cat {block_gate} > /dev/null") as ep:
        assert fxc.get_endpoint_status(ep.eid)["details"]["managers"] == 0
        [tid] = fxc.batch_run(_one(fxc, ep.eid, fns["gate"], str(started), str(release)))

        status = wait_until(lambda: redis_client.hget(keys.task(tid), "status")
                            == "waiting-for-nodes", timeout=15, step=0.05)
        assert status, redis_client.hget(keys.task(tid), "status")
        st = fxc.get_task(tid)
        assert st["pending"] and st["status"] == "waiting-for-nodes"

        write_fifo(block_gate)  # the strategy's new block may now start its manager
        worker_pid = int(read_fifo(started))
        mgr = manager_of(worker_pid)
        assert wait_until(lambda: redis_client.hget(keys.task(tid), "status") == "running",
                          timeout=5, step=0.02)
        assert fxc.get_task(tid)["status"] == "running"
        details = wait_until(lambda: (lambda d: d if d.get("managers") == 1 else None)(
            fxc.get_endpoint_status(ep.eid)["details"]))
        assert details and details["manager_details"][0]["pid"] == mgr.pid

        write_fifo(release, "go")
        fxc.wait([tid], timeout=WAIT_S)
        assert fxc.get_result(tid) == "released:go"

        # idle for max_idletime: the block is cancelled, its manager exits
        assert gone([mgr.pid], timeout=20), "the idle block was not scaled in"
        assert wait_until(lambda: fxc.get_endpoint_status(ep.eid)["details"]["managers"] == 0)
        assert daemon.running_pid(ep.dir)  # scaling in did not hurt the agent

        # and it scales out again from nothing
        [again] = fxc.map_run([12], endpoint_id=ep.eid, function_id=fns["square_pid"])
        write_fifo(block_gate)
        fxc.wait([again], timeout=WAIT_S)
        assert outcome(fxc, again)[0] == 144


# ---------------------------------------------------------- 6. start refusals
def _cli(*args, env=None, timeout=90):
    exe = Path(sys.executable).with_name("funcx-endpoint")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def test_start_refuses_when_already_running(fxc):
    from endpoint import daemon

    with own_endpoint(fxc, "twice") as ep:
        pid = daemon.running_pid(ep.dir)
        with pytest.raises(daemon.EndpointError, match="already running"):
            daemon.start(ep.name)
        r = _cli("start", ep.name)
        assert r.returncode == 1 and "already running" in r.stderr
        assert "Traceback" not in r.stderr + r.stdout
        assert daemon.running_pid(ep.dir) == pid  # the running one is untouched


def test_bad_config_names_file_and_line(fxc):
    from endpoint import daemon
    from endpoint.config_file import ConfigError
    from endpoint.paths import EndpointDir

    name = f"fail-badcfg-{uuid.uuid4().hex[:6]}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, mode=0o700)
    ep.config_file.write_text("from endpoint.config import Config\n\n"
                              "config = Config(provider=NoSuchProvider())\n")
    with pytest.raises(ConfigError) as info:
        daemon.start(name)
    msg = str(info.value)
    assert f"{ep.config_file}:3:" in msg and "NameError" in msg and "NoSuchProvider" in msg
    assert "Traceback" not in msg

    r = _cli("start", name)
    assert r.returncode == 1
    assert f"{ep.config_file}:3:" in r.stderr and "NameError" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert daemon.running_pid(ep) is None and not ep.id_file.exists()


def test_another_user_cannot_take_over_an_endpoint(fxc, http, redis_client, service, tmp_path):
    from backend.store import users
    from funcx.protocol import keys

    mine = fxc.register_endpoint(f"fail-owned-{uuid.uuid4().hex[:6]}")["endpoint_id"]
    shared = fxc.register_endpoint(f"fail-shared-{uuid.uuid4().hex[:6]}", public=True)["endpoint_id"]
    uid = users.create_user(redis_client, f"intruder-{uuid.uuid4().hex[:8]}")
    intruder = users.issue_token(redis_client, uid)
    try:
        import requests

        body = {"endpoint_name": "hijacked", "metadata": {}}
        auth = {"Authorization": f"Bearer {intruder}"}
        r = requests.put(f"{service}/v3/endpoints/{shared}", json=body, headers=auth, timeout=30)
        assert r.status_code == 403, r.text
        assert set(r.json()) >= {"code", "message"}
        r = requests.put(f"{service}/v3/endpoints/{mine}", json=body, headers=auth, timeout=30)
        assert r.status_code == 404, r.text  # a private endpoint's existence is not revealed

        # the real `funcx-endpoint start` as the second user, with the first user's id
        home = tmp_path / "intruder-home"
        (home / "credentials").mkdir(parents=True)
        (home / "credentials" / "token.json").write_text(
            json.dumps({"token": intruder, "service_url": service}))
        ep_dir = home / "taken"
        ep_dir.mkdir()
        ep_dir.joinpath("config.py").write_text(CONFIG.format(
            init_blocks=0, min_blocks=0, max_blocks=1, workers=1, extra=""))
        ep_dir.joinpath("endpoint.json").write_text(json.dumps({"endpoint_id": shared}))
        r = _cli("start", "taken", env={"FUNCX_HOME": str(home)})
        assert r.returncode == 1, r.stdout + r.stderr
        assert "403" in r.stderr and "owner" in r.stderr
        assert not (ep_dir / "daemon.pid").exists()

        for eid in (mine, shared):  # still the first user's, unchanged
            rec = http.get(f"{http.base_url}/v2/endpoints/{eid}").json()
            assert rec.get("name") != "hijacked", rec
        assert redis_client.hget(keys.endpoint(shared), "owner") == fxc.whoami()["user_id"]
    finally:
        for eid in (mine, shared):
            fxc.delete_endpoint(eid)


BROKEN_PROVIDER = """from parsl.providers import LocalProvider

from endpoint.config import Config


class Broken(LocalProvider):
    def submit(self, command, tasks_per_node, job_name="x"):
        {body}


config = Config(provider=Broken(init_blocks=1, min_blocks=0, max_blocks=1),
                max_workers_per_node=1)
"""


@pytest.mark.parametrize("body, said", [
    ('raise RuntimeError("no nodes today")', "RuntimeError: no nodes today"),
    ("return None", "started none of the 1 initial block(s)"),
])
def test_start_fails_when_the_first_block_cannot_be_submitted(fxc, body, said):
    """`start` says "ok" only once a block was submitted; otherwise it names
    the step that failed and the log, and leaves nothing running."""
    from endpoint import daemon
    from endpoint.paths import EndpointDir

    name = f"fail-provider-{uuid.uuid4().hex[:6]}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, mode=0o700)
    ep.config_file.write_text(BROKEN_PROVIDER.format(body=body))
    try:
        with pytest.raises(daemon.EndpointError) as err:
            daemon.start(name)
        text = str(err.value)
        assert "submitting the first block to the provider" in text and said in text, text
        assert str(ep.log_file) in text
        assert daemon.running_pid(ep) is None
        assert not ep.pid_file.exists() and not ep.record_file.exists()
    finally:
        eid = daemon.saved_id(ep)
        if eid:
            fxc.delete_endpoint(eid)


def test_a_reused_pid_is_not_the_daemon(tmp_path):
    """The daemon's record names pid *and* start time: a live process that got
    the dead daemon's pid is not taken for it (and the stale record goes)."""
    from endpoint import daemon
    from endpoint.paths import EndpointDir
    from funcx.home import write_private_json

    name = f"fail-reused-{uuid.uuid4().hex[:6]}"
    write_config(name, init_blocks=0)
    ep = EndpointDir(name)
    write_private_json(ep.record_file, {"pid": os.getpid(), "started": 12345.0})
    ep.pid_file.write_text(str(os.getpid()))
    assert daemon.running_pid(ep) is None
    assert not ep.record_file.exists() and not ep.pid_file.exists()
    assert daemon.status_of(ep) == "Initialized"


def test_a_starting_daemon_ends_the_blocks_a_dead_one_left(tmp_path):
    """Blocks recorded by a dead daemon (pid + start time) are ended with their
    whole tree; a record whose pid now names another process is left alone."""
    from endpoint import daemon
    from endpoint.blocks import block_record_file
    from endpoint.paths import EndpointDir
    from funcx.lifecycle import ProcessRecord

    name = f"fail-leftover-{uuid.uuid4().hex[:6]}"
    write_config(name, init_blocks=0)
    ep = EndpointDir(name)
    block = subprocess.Popen(["bash", "-c", "sleep 60 & sleep 60 & wait"],
                             stdin=subprocess.DEVNULL)
    try:
        kids = wait_until(lambda: (lambda c: c if len(c) == 2 else None)(
            psutil.Process(block.pid).children()), 10)
        assert kids
        block_record_file(ep.run_dir).write_text(json.dumps({
            "0": ProcessRecord.of(block.pid).to_dict(),
            "1": {"pid": os.getpid(), "started": 12345.0}}))  # pid reused by us
        assert daemon.end_predecessor(ep) == [block.pid]
        block.wait(10)
        assert gone([k.pid for k in kids])
        assert not block_record_file(ep.run_dir).exists()
    finally:
        if block.poll() is None:
            block.kill()
            block.wait()


# ------------------------------------------------------------------ 7. stop
def test_stop_leaves_no_manager_or_worker(fxc, fns, tmp_path):
    from endpoint import daemon

    pipe = fifo(tmp_path, "busy")
    with own_endpoint(fxc, "stop") as ep:
        fxc.batch_run(_one(fxc, ep.eid, fns["hold"], str(pipe)))  # busy while stopping
        worker_pid = int(read_fifo(pipe))
        mgr = manager_of(worker_pid)
        addr = mgr.cmdline()[mgr.cmdline().index("--addr") + 1]
        workers = [p.pid for p in mgr.children()]
        assert worker_pid in workers and len(workers) == 2
        recorded = {mgr.pid, *workers}

        assert daemon.stop(ep.name) is True
        assert daemon.running_pid(ep.dir) is None and not ep.dir.pid_file.exists()
        left = [pid for pid in recorded if not _dead(pid)]
        assert not left, f"still running after stop: {left}"
        # nothing of this endpoint anywhere: no manager of its interchange, no
        # worker of that manager
        mine = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if ("endpoint.manager" in cmd and addr in cmd) or \
                    ("endpoint.worker" in cmd and p.info["pid"] in recorded):
                mine.append(p.info["pid"])
        assert not mine
        assert daemon.stop(ep.name) is False  # stopping again says it was not running


def test_stop_from_another_process_ends_a_daemon_its_starter_never_reaps(fxc):
    """A daemon started in-process (this test process is its parent and does
    not reap it) becomes a zombie when it ends: ``funcx-endpoint stop`` from
    another process counts that as stopped instead of waiting it out and failing."""
    with own_endpoint(fxc, "zombie") as ep:
        pid = int(ep.dir.pid_file.read_text().split()[0])
        cli = Path(sys.executable).parent / "funcx-endpoint"
        res = subprocess.run([str(cli), "stop", ep.name], capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr
        assert "stopped" in res.stdout
        st = psutil.Process(pid).status() if psutil.pid_exists(pid) else "gone"
        assert st in (psutil.STATUS_ZOMBIE, "gone")
        assert not ep.dir.pid_file.exists()
