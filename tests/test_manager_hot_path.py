"""The manager's per-task path (issue 20), on a real manager with a real
worker process and a real interchange over CurveZMQ (the rig of
tests/test_manager_cancel.py; the test thread turns the manager's loop):

- tasks queued behind a busy worker run one by one, in order, each result
  once, while the manager looks at its workers once per loop step, and
  however long results may wait for others while the worker is busy;
- a task that finishes within ``running_defer`` is never reported running
  (its result says it ran: no RUNNING message, no status write), and one
  still running after it is reported, once.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_manager_cancel import Rig, sleepy, square, task

from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


@pytest.mark.parametrize("linger", [0.0, 60.0])
def test_queued_tasks_run_in_order_each_result_once_and_short_ones_never_said_running(
        rig, linger):
    """With a result linger longer than the test, results held while the
    worker runs the next task still all arrive: the last one goes at once."""
    mgr = rig.mgr
    mgr.running_defer = 60.0  # longer than any of these tasks can take
    mgr.result_linger = linger
    ids = [f"sq{i}" for i in range(30)]
    rig.ix.submit([task(t, square, i) for i, t in enumerate(ids)], rig.feed)
    rig.step_until(lambda: all(rig.out.results(t) for t in ids), "every result")
    got = [r for r in rig.out.items if getattr(r, "task_id", None) in ids]
    assert [r.task_id for r in got] == ids  # one worker: in order, each once
    assert [SER.deserialize(r.data) for r in got] == [i * i for i in range(30)]
    assert not rig.out.running() & set(ids)
    assert not mgr.running and not mgr.pending


def test_a_task_still_running_after_the_deferral_is_reported_once(rig):
    mgr = rig.mgr
    mgr.running_defer = 0.2
    t0 = time.monotonic()
    rig.ix.submit([task("long", sleepy, 60)], rig.feed)
    rig.step_until(lambda: "long" in rig.out.running(), "'running' for the long task")
    assert time.monotonic() - t0 >= 0.2
    assert mgr.slots[0].task is not None and mgr.slots[0].task.task_id == "long"
    assert "long" not in mgr.running  # reported: not again
    running_reports = [i for i in rig.out.items if getattr(i, "status", "") == "running"]
    assert sum(i.task_ids.count("long") for i in running_reports) == 1
