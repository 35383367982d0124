"""Links that come back (issue 15), with real processes: a real service, a
real endpoint daemon (its interchange and agent) and a manager started by hand
with the command ``funcx-endpoint manager-command`` prints, over CurveZMQ.

(a) ``funcx-endpoint restart`` with tasks running on the hand-started manager:
    the manager is not killed, the interchange comes back on the same port,
    the manager reconnects, and tasks submitted before and after complete —
    each with one result, each run once.
(b) An outage longer than the heartbeat threshold (the agent daemon stopped
    with SIGSTOP, twice) while long tasks run on the manager: the manager
    does not exit, reconnects, and every task completes exactly once — the
    cuts cost no retry (two cuts with one retry allowed) and ran nothing twice.

No block managers: the endpoint's provider starts none, so every task runs on
the hand-started manager.
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.faults.faultlib import wait_until

WAIT_S = 90.0
PERIOD, THRESHOLD = 0.3, 1.5

CONFIG = f"""from parsl.providers import LocalProvider

from endpoint.config import Config

config = Config(
    # no blocks: the managers are started by hand
    provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=0),
    max_workers_per_node=4,
    heartbeat_period={PERIOD},
    heartbeat_threshold={THRESHOLD},
    task_retries_on_manager_lost=1,
    prefetch_capacity=0,
)
"""


def mark(i, seconds, path):
    """Note each run of task ``i`` in ``path``, take ``seconds``, return i*i."""
    import time

    with open(path, "a") as f:
        f.write(f"{i}\n")
    time.sleep(seconds)
    return i * i


# -------------------------------------------------------------------- helpers
def until(predicate: Callable[[], object], what: str, timeout: float = 30.0,
          step: float = 0.05) -> object:
    """Bounded wait for a condition only a file or the service can tell."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        pause.wait(step)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "endpoint.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=os.environ.copy())


def runs(path: Path) -> Counter:
    """How many times each task (by argument) started."""
    return Counter(int(x) for x in path.read_text().split()) if path.exists() else Counter()


@contextmanager
def hand_started_endpoint(fxc, tag: str, tmp_path: Path) -> Iterator[SimpleNamespace]:
    """An endpoint with no blocks, and one manager started by hand with the
    command ``manager-command`` prints; both ended after (the manager by SIGTERM)."""
    from endpoint import daemon
    from endpoint.curve import ManagerKeys
    from endpoint.paths import EndpointDir

    name = f"reconnect-{tag}-{uuid.uuid4().hex[:6]}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, mode=0o700)
    ep.config_file.write_text(CONFIG)
    started = cli("start", name)  # as a user would: the daemon is not this process's child
    assert started.returncode == 0, started.stdout + started.stderr
    eid = daemon.saved_id(ep)
    mgr = None
    log = tmp_path / f"manager-{tag}.log"
    try:
        shown = cli("manager-command", name)
        assert shown.returncode == 0, shown.stderr
        keys = ManagerKeys.load(ep.run_dir / "curve" / "manager.key_secret")
        for secret in (keys.secret, keys.public, keys.server_public):
            assert secret.decode() not in shown.stdout + shown.stderr  # paths, never keys
        command = shlex.split(shown.stdout.strip().splitlines()[-1])
        assert command[:2] == ["funcx-endpoint", "manager"], shown.stdout
        with open(log, "wb") as out:
            mgr = subprocess.Popen([sys.executable, "-m", "endpoint.cli", *command[1:]],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        until(lambda: "registered" in (ep.log_file.read_text() if ep.log_file.exists() else ""),
              "the hand-started manager to register")
        yield SimpleNamespace(name=name, eid=eid, dir=ep, mgr=mgr, log=log)
    except BaseException:  # show what the endpoint and the manager saw
        for path in (ep.log_file, log):
            if path.exists():
                print(f"--- {path} ---\n{path.read_text()[-8000:]}")
        raise
    finally:
        if mgr is not None and mgr.poll() is None:
            mgr.send_signal(signal.SIGTERM)
            try:
                mgr.wait(20)
            except subprocess.TimeoutExpired:
                mgr.kill()
                mgr.wait(5)
        daemon.stop(name)
        if ep.log_file.exists():  # kept beside the manager's log, for a post-mortem
            (tmp_path / f"endpoint-{tag}.log").write_bytes(ep.log_file.read_bytes())
        try:
            fxc.delete_endpoint(eid)
        except Exception:  # noqa: BLE001 - cleanup only
            pass


def submit(fxc, eid: str, fid: str, tg: str, items: list[tuple[int, float]], marks: Path) -> list:
    batch = fxc.create_batch(task_group_id=tg)
    for i, seconds in items:
        batch.add(i, seconds, str(marks), endpoint_id=eid, function_id=fid)
    return fxc.batch_run(batch)


def assert_each_once(fxc, redis_client, tg: str, tids: list, expected: list[int]) -> None:
    """Every task succeeded with its value, and its group saw one terminal event."""
    from funcx.protocol import keys

    done = fxc.wait(tids, timeout=WAIT_S)
    bad = {t: repr(d.get("exception")) for t, d in done.items() if d["status"] != "success"}
    assert not bad, bad
    assert [fxc.get_result(t) for t in tids] == expected
    events = redis_client.xrange(keys.task_group_events(tg))
    per_task = Counter(fields["task_id"] for _, fields in events)
    assert set(per_task) == set(tids) and set(per_task.values()) == {1}, per_task


@pytest.fixture(scope="module")
def fid(fxc):
    return fxc.register_function(mark)


# ------------------------------------------------------------------- (a) restart
@pytest.mark.slow
def test_hand_started_manager_survives_restart(fxc, fid, redis_client, tmp_path):
    from endpoint.interchange import PORT_FILE, saved_port

    marks = tmp_path / "runs"
    with hand_started_endpoint(fxc, "restart", tmp_path) as ep:
        pid = ep.mgr.pid
        port = saved_port(ep.dir.run_dir / PORT_FILE)
        assert port and f":{port}" in " ".join(Path(f"/proc/{pid}/cmdline").read_text().split("\0"))
        tg = str(uuid.uuid4())
        before = submit(fxc, ep.eid, fid, tg, [(i, 1.5) for i in range(8)], marks)
        until(lambda: len(runs(marks)) >= 4, "four tasks running on the manager")

        restarted = cli("restart", ep.name)
        assert restarted.returncode == 0, restarted.stderr
        assert saved_port(ep.dir.run_dir / PORT_FILE) == port  # managers find it again
        assert ep.mgr.poll() is None, "restart killed the hand-started manager"

        after = submit(fxc, ep.eid, fid, tg, [(i, 0.1) for i in range(8, 14)], marks)
        tids = before + after
        assert_each_once(fxc, redis_client, tg, tids, [i * i for i in range(14)])
        assert runs(marks) == Counter(range(14)), "a task ran twice"
        assert ep.mgr.poll() is None and ep.mgr.pid == pid  # the same manager, never exited
        text = ep.log.read_text()
        assert "reconnecting" in text and "exiting" not in text
        assert "started by hand" in ep.dir.log_file.read_text()
        until(lambda: "(started by hand)" in cli("status", ep.name).stdout,
              "funcx-endpoint status to show the hand-started manager", timeout=20, step=0.5)


# -------------------------------------------------------------------- (b) outage
def _cut(stop_pid: int, ep: SimpleNamespace, noticed: Callable[[], bool], what: str) -> None:
    """Stop ``stop_pid`` (SIGSTOP) until ``noticed()``, plus a little: an outage
    longer than the heartbeat threshold."""
    os.kill(stop_pid, signal.SIGSTOP)
    try:
        until(noticed, what, timeout=THRESHOLD * 10)
        time.sleep(PERIOD)  # not a synchronization: the cut lasts a little longer
    finally:
        os.kill(stop_pid, signal.SIGCONT)


@pytest.mark.slow  # an endpoint (or ingester) waited through timeouts: the slow CI step
def test_outage_longer_than_the_threshold_loses_and_repeats_nothing(fxc, fid, redis_client,
                                                                     tmp_path):
    """Three cuts longer than the threshold while long tasks run on the manager:
    the agent stopped (the manager reconnects; the stalled interchange does not
    blame it), then the manager stopped twice (the interchange declares it lost
    and re-queues its tasks; it comes back holding them: re-attached, the retry
    refunded — with one retry allowed, two losses would otherwise fail them)."""
    marks = tmp_path / "runs"
    with hand_started_endpoint(fxc, "outage", tmp_path) as ep:
        pid = ep.mgr.pid
        agent = int(ep.dir.pid_file.read_text())
        tg = str(uuid.uuid4())
        # four long tasks hold the four workers across the cuts; short ones queue
        tids = submit(fxc, ep.eid, fid, tg, [(i, 12.0) for i in range(4)]
                      + [(i, 0.2) for i in range(4, 12)], marks)
        until(lambda: len(runs(marks)) >= 4, "the long tasks running on the manager")
        mlog = lambda: ep.log.read_text()  # noqa: E731
        elog = lambda: ep.dir.log_file.read_text()  # noqa: E731

        seen = mlog().count("reconnecting")
        _cut(agent, ep, lambda: mlog().count("reconnecting") > seen,
             "the manager to notice the agent's outage")
        until(lambda: "answers again" in mlog(), "the manager to hear the interchange again")
        until(lambda: "did not run for" in elog(), "the interchange to notice its own stall")
        assert "declared lost" not in elog()

        for cut in (1, 2):
            lost = elog().count("declared lost")
            _cut(pid, ep, lambda lost=lost: elog().count("declared lost") > lost,
                 f"the interchange to declare the stopped manager lost ({cut})")
            until(lambda cut=cut: elog().count("retries refunded") - elog().count(
                "(0 retries refunded)") >= cut, f"the manager's tasks re-attached ({cut})")
            assert ep.mgr.poll() is None, "the manager exited during the outage"

        assert_each_once(fxc, redis_client, tg, tids, [i * i for i in range(12)])
        assert runs(marks) == Counter(range(12)), "a task ran twice"
        assert ep.mgr.poll() is None and ep.mgr.pid == pid
        assert "ManagerLost" not in elog()


# ------------------------------------------------ the pieces, without a service
def test_interchange_port_is_kept_across_starts(tmp_path):
    """Port 0: the first port chosen is saved in the run dir and bound again at
    the next start; when another process holds it, a new one is chosen and saved."""
    import socket as so

    from endpoint.interchange import PORT_FILE, Interchange, saved_port

    def released(port: int) -> bool:
        """ZeroMQ closes a listener in its I/O thread, after close() returns:
        a restart in a new process never races it, this test must wait for it."""
        probe = so.socket()
        probe.setsockopt(so.SOL_SOCKET, so.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
        finally:
            probe.close()

    run = tmp_path / "run"
    first = Interchange("127.0.0.1", 0, lambda _: None, 0.5, 2.0, 1, key_dir=run / "curve")
    port = first.port
    first.close()
    assert saved_port(run / PORT_FILE) == port
    assert wait_until(lambda: released(port), 10), "the first interchange's port stayed bound"
    again = Interchange("127.0.0.1", 0, lambda _: None, 0.5, 2.0, 1, key_dir=run / "curve")
    try:
        assert again.port == port
    finally:
        again.close()
    assert wait_until(lambda: released(port), 10), "the second interchange's port stayed bound"
    squatter = so.socket()
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        moved = Interchange("127.0.0.1", 0, lambda _: None, 0.5, 2.0, 1, key_dir=run / "curve")
        try:
            assert moved.port != port and saved_port(run / PORT_FILE) == moved.port
        finally:
            moved.close()
    finally:
        squatter.close()


def test_help_documents_hand_started_managers():
    from typer.testing import CliRunner

    from endpoint.cli import app

    runner = CliRunner()
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0 and "manager-command" in top.output
    for command, words in ((["manager", "--help"], ("--addr", "--keys", "--workers", "Example:")),
                           (["manager-command", "--help"], ("key file", "Example:")),
                           (["stop", "--help"], ("by hand", "left running")),
                           (["restart", "--help"], ("by hand",))):
        shown = runner.invoke(app, command, terminal_width=200)
        assert shown.exit_code == 0, shown.output
        text = " ".join(shown.output.split())
        for w in words:
            assert w in text, (command, w, text)


def test_manager_command_before_the_first_start_says_what_to_do(funcx_home):
    from typer.testing import CliRunner

    from endpoint.cli import app
    from endpoint.paths import EndpointDir

    name = f"never-started-{uuid.uuid4().hex[:6]}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, mode=0o700)
    ep.config_file.write_text(CONFIG)
    shown = CliRunner().invoke(app, ["manager-command", name])
    assert shown.exit_code == 3
    assert f"funcx-endpoint start {name}" in shown.output


def test_manager_refuses_a_bad_address():
    from typer.testing import CliRunner

    from endpoint.cli import app

    shown = CliRunner().invoke(app, ["manager", "--addr", "login1:5000", "--keys", "/nope"])
    assert shown.exit_code == 2 and "tcp://HOST:PORT" in shown.output


# ------------------- a restarted interchange, a manager that registers at once
class Outputs:
    """What an interchange hands its agent, awaitable."""

    def __init__(self) -> None:
        self.items: list = []
        self.cond = threading.Condition()

    def __call__(self, batch: list) -> None:
        with self.cond:
            self.items.extend(batch)
            self.cond.notify_all()

    def wait(self, what: str, predicate: Callable[[list], bool], timeout: float = 30.0) -> list:
        with self.cond:
            if not self.cond.wait_for(lambda: predicate(self.items), timeout):
                raise AssertionError(f"timed out waiting for {what}")
            return list(self.items)


def test_manager_registers_again_at_once_with_a_restarted_interchange(tmp_path):
    """The interchange ends (the agent restarts) and a new one binds the same
    port with the same keys: the manager's socket reconnects and it registers
    again at once (long before its silence threshold), holding its running
    tasks; when the new agent hands them over again they are booked to it,
    not run again, and each result comes out once."""
    from endpoint.interchange import Interchange
    from endpoint.launch import ManagerLaunch
    from funcx.protocol.messages import Result, StatusUpdate, Task
    from funcx.serialize import FuncXSerializer

    ser = FuncXSerializer()
    marks = tmp_path / "runs"
    key_dir = tmp_path / "ep" / "run" / "curve"

    def interchange(out: Outputs) -> tuple[Interchange, threading.Thread]:
        ix = Interchange("127.0.0.1", 0, out, heartbeat_period=0.5, heartbeat_threshold=30.0,
                         max_retries=1, poll_period=0.05, key_dir=key_dir)
        t = threading.Thread(target=ix.run, name="interchange", daemon=True)
        t.start()
        return ix, t

    def task(i: int, seconds: float) -> Task:
        return Task(task_id=f"t{i}", function_id="f-mark", task_group_id="g",
                    payload=ser.serialize_payload((i, seconds, str(marks)), {}),
                    function_code=ser.serialize_function(mark))

    def results(items: list, tid: str) -> list[Result]:
        return [i for i in items if isinstance(i, Result) and i.task_id == tid]

    out_a = Outputs()
    ix_a, thread_a = interchange(out_a)
    port = ix_a.port
    launch = ManagerLaunch(addr=ix_a.url, workers=2, curve_keys=str(ix_a.keys.manager_file),
                           manager_id="hand-mgr", heartbeat_period=0.5, heartbeat_threshold=30.0,
                           hand_started=True)
    log = tmp_path / "manager.log"
    with open(log, "wb") as f:
        mgr = subprocess.Popen(launch.command(), stdin=subprocess.DEVNULL, stdout=f,
                               stderr=subprocess.STDOUT)
    ix_b = thread_b = None
    try:
        until(lambda: b"hand-mgr" in ix_a.managers, "the manager to register")
        assert ix_a.state.hand_started == {b"hand-mgr"}
        feed = ix_a.feeder()
        ix_a.submit([task(0, 3.0), task(1, 3.0)], feed)
        out_a.wait("both tasks running", lambda items: {
            t for i in items if isinstance(i, StatusUpdate) and i.status == "running"
            for t in i.task_ids} >= {"t0", "t1"})
        feed.close()
        ix_a.stop_event.set()  # the agent stops: a hand-started manager is not told to end
        thread_a.join(10)
        ix_a.close()
        assert mgr.poll() is None

        stopped = time.monotonic()
        out_b = Outputs()
        ix_b, thread_b = interchange(out_b)
        assert ix_b.port == port  # the same port, from the run dir
        until(lambda: b"hand-mgr" in ix_b.managers, "the manager to register again")
        assert time.monotonic() - stopped < 15  # by the reconnect, not the 30 s silence
        assert "registering again" in log.read_text()
        feed = ix_b.feeder()
        ix_b.submit([task(0, 3.0), task(1, 3.0)], feed)  # the new agent reclaims them
        got = out_b.wait("both results", lambda items: all(results(items, t) for t in ("t0", "t1")))
        ix_b.submit([task(2, 0.0)], feed)  # and the manager takes new work
        got = out_b.wait("t2's result", lambda items: bool(results(items, "t2")))
        feed.close()
        for i in range(3):
            [r] = results(got, f"t{i}")
            assert r.status == "success" and ser.deserialize(r.data) == i * i
            assert r.task_group_id == "g"
        assert results(out_a.items, "t0") == results(out_a.items, "t1") == []
        assert runs(marks) == Counter(range(3)), "a task ran twice"
        assert mgr.poll() is None
        mgr.send_signal(signal.SIGTERM)  # what ends a hand-started manager
        assert mgr.wait(20) == 0
    finally:
        if mgr.poll() is None:
            mgr.kill()
            mgr.wait(10)
        if ix_b is not None and thread_b is not None:
            ix_b.stop_event.set()
            thread_b.join(10)
            ix_b.close()
