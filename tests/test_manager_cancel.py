"""A manager told to cancel tasks (issue 16, "stop anything"; review 16
finding 17): :meth:`endpoint.manager.Manager.cancel`, with a real manager
object on real ZeroMQ (CurveZMQ) to a real interchange running in a thread,
and real worker processes.  The test thread turns the manager's own loop
step (``Manager._step``), so what it holds can be looked at between steps.

- a running task's worker is killed and replaced, a task queued on the
  manager is dropped, and neither sends "running" again nor a result; the
  task queued behind them runs on the replacement worker;
- a finished task's result not yet sent is dropped; one sent and not yet
  acknowledged is kept, and sent again when the manager registers again,
  where the interchange drops it as cancelled (not as a stranger's result).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import zmq
from faults.faultlib import wait_until

from funcx.protocol.messages import Kind, Result, StatusUpdate, Task, pack
from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
WAIT_S = 30.0


def sleepy(seconds):
    import time

    time.sleep(seconds)
    return seconds


def square(x):
    return x * x


class Outputs:
    """What the interchange hands its agent."""

    def __init__(self) -> None:
        self.items: list = []
        self.lock = threading.Lock()

    def __call__(self, batch: list) -> None:
        with self.lock:
            self.items.extend(batch)

    def results(self, tid: str) -> list[Result]:
        with self.lock:
            return [i for i in self.items if isinstance(i, Result) and i.task_id == tid]

    def running(self) -> set[str]:
        with self.lock:
            return {t for i in self.items if isinstance(i, StatusUpdate) and i.status == "running"
                    for t in i.task_ids}


class Rig:
    """An interchange (its own thread) and one manager (stepped by the test)."""

    def __init__(self, tmp_path: Path):
        from endpoint.interchange import Interchange
        from endpoint.launch import ManagerLaunch
        from endpoint.manager import Manager

        self.out = Outputs()
        self.ix = Interchange("127.0.0.1", 0, self.out, heartbeat_period=0.5,
                              heartbeat_threshold=30.0, max_retries=0, poll_period=0.02,
                              key_dir=tmp_path / "curve")
        self.thread = threading.Thread(target=self.ix.run, name="interchange", daemon=True)
        self.thread.start()
        self.feed = self.ix.feeder()
        launch = ManagerLaunch(addr=self.ix.url, workers=1, prefetch=2,
                               curve_keys=str(self.ix.keys.manager_file), manager_id="m-cancel",
                               heartbeat_period=0.5, heartbeat_threshold=30.0, hand_started=True)
        self.mgr = Manager(launch)
        for slot in self.mgr.slots:  # as Manager.run starts
            self.mgr.pool.spawn(slot)
        self.mgr.register()
        self.poller = self.mgr.poller = zmq.Poller()
        for sock in (self.mgr.up, self.mgr.mon, self.mgr.down):
            self.poller.register(sock, zmq.POLLIN)
        self.step_until(lambda: b"m-cancel" in self.ix.managers, "the manager to register")

    def step_until(self, predicate: Callable[[], object], what: str) -> None:
        """Turn the manager's loop until ``predicate`` holds (bounded)."""
        deadline = threading.Event()
        timer = threading.Timer(WAIT_S, deadline.set)
        timer.start()
        try:
            while not predicate():
                if deadline.is_set():
                    raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}")
                self.mgr._step(self.poller, 0.02)
        finally:
            timer.cancel()

    def close(self) -> None:
        self.mgr.stopping = True
        self.mgr.shutdown()
        self.feed.close(linger=0)
        self.ix.stop_event.set()
        self.thread.join(10)
        self.ix.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def ended(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def task(tid: str, fn, *args) -> Task:
    return Task(task_id=tid, function_id=f"f-{fn.__name__}", task_group_id="g",
                payload=SER.serialize_payload(args, {}), function_code=SER.serialize_function(fn))


def test_cancel_kills_the_running_task_drops_the_queued_one_and_runs_the_next(rig):
    mgr = rig.mgr
    rig.ix.submit([task("run", sleepy, 60), task("queued", square, 2), task("next", square, 3)],
                  rig.feed)
    slot = mgr.slots[0]
    rig.step_until(lambda: slot.task is not None and slot.task.task_id == "run"
                   and [t.task_id for t in mgr.pending] == ["queued", "next"],
                   "one task running on the worker, two queued on the manager")
    rig.step_until(lambda: "run" in rig.out.running(), "'running' to reach the interchange")
    assert slot.proc is not None
    killed = slot.proc.pid
    rig.ix.cancel(["run", "queued"], rig.feed)
    rig.step_until(lambda: rig.out.results("next"), "the next task's result")
    [r] = rig.out.results("next")
    assert r.status == "success" and SER.deserialize(r.data) == 9
    assert slot.proc is not None and slot.proc.pid != killed  # replaced at once
    rig.step_until(lambda: ended(killed), "the killed worker to end")
    assert rig.out.results("run") == rig.out.results("queued") == []
    assert "queued" not in rig.out.running()
    assert not mgr.pending and mgr.held_ids() <= {"next"}


def test_cancel_drops_unsent_results_and_resends_unacknowledged_ones(rig):
    mgr = rig.mgr
    # the state a manager is in between two loop steps: tasks queued on it, a
    # finished task's result not sent yet, another sent and not acknowledged
    mgr.pending = deque([task("q-gone", square, 1), task("q-kept", square, 2)])
    mgr.results = [Result("unsent-gone", "success", data=SER.serialize(1)),
                   Result("unsent-kept", "success", data=SER.serialize(2))]
    mgr.sent = 1
    mgr.unacked.clear()
    mgr.unacked.add(1, Result("sent-gone", "success", data=SER.serialize(3)))
    ids = ["q-gone", "unsent-gone", "sent-gone"]
    rig.ix.cancel(ids, rig.feed)  # the interchange remembers them cancelled
    assert wait_until(lambda: set(ids) <= set(rig.ix.state.cancelled), WAIT_S), \
        "the interchange never took the cancel"
    mgr.on_interchange(pack(Kind.CANCEL, ids))  # the message it sends a holder
    assert [t.task_id for t in mgr.pending] == ["q-kept"]
    assert [r.task_id for r in mgr.results] == ["unsent-kept"]
    assert [r.task_id for _, r in mgr.unacked] == ["sent-gone"]  # sent: kept until acked
    before = dict(rig.ix.stats)
    mgr.pending.clear()
    mgr.results = []
    mgr.register_again()  # after a reconnect: the unacknowledged result goes again
    rig.step_until(lambda: rig.ix.stats["cancelled_late"] > before["cancelled_late"],
                   "the interchange to get the resent result")
    assert rig.ix.stats["foreign_results"] == before["foreign_results"]
    assert rig.out.results("sent-gone") == []
