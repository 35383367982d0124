"""Unit tests of the interchange's pure decisions: endpoint/scheduling.py and
endpoint/strategy.py."""
from __future__ import annotations

from collections import deque

import pytest

from endpoint.scheduling import ManagerState, assign, lost_manager_tasks
from endpoint.strategy import ScalingInput, decide
from funcx.protocol.messages import Result, Task


def task(tid: str, container: str = "") -> Task:
    return Task(task_id=tid, function_id="f", payload="p", task_group_id="g",
                container_id=container)


def manager(mid: str, credits: int, containers: tuple[str, ...] = ("",),
            accepts_containers: bool = True) -> ManagerState:
    return ManagerState(manager_id=mid.encode(), block_id="0", hostname="h", workers=credits,
                        credits=credits, last_heard=0.0, containers=containers,
                        accepts_containers=accepts_containers)


def ids(tasks) -> list[str]:
    return [t.task_id for t in tasks]


# ------------------------------------------------------------------ assign
def test_assign_respects_credits():
    pending = deque(task(f"t{i}") for i in range(10))
    out = assign(pending, [manager("a", 2), manager("b", 3)])
    assert len(out[b"a"]) == 2
    assert len(out[b"b"]) == 3
    assert ids(pending) == [f"t{i}" for i in range(5, 10)]  # the rest wait, in order


def test_assign_does_not_mutate_manager_credits():
    a = manager("a", 2)
    assign(deque([task("t0")]), [a])
    assert a.credits == 2  # the caller decides when credits are spent


def test_assign_nothing_without_credits():
    pending = deque(task(f"t{i}") for i in range(3))
    assert assign(pending, [manager("a", 0), manager("b", 0)]) == {}
    assert ids(pending) == ["t0", "t1", "t2"]


def test_assign_no_managers():
    pending = deque([task("t0")])
    assert assign(pending, []) == {}
    assert ids(pending) == ["t0"]


def test_assign_keeps_arrival_order_per_manager():
    pending = deque(task(f"t{i}") for i in range(8))
    out = assign(pending, [manager("a", 4), manager("b", 4)])
    for batch in out.values():
        nums = [int(t.task_id[1:]) for t in batch]
        assert nums == sorted(nums)
    assert sorted(ids(out[b"a"]) + ids(out[b"b"])) == sorted(f"t{i}" for i in range(8))
    assert not pending


def test_assign_spreads_across_managers():
    pending = deque(task(f"t{i}") for i in range(4))
    out = assign(pending, [manager("a", 4), manager("b", 4), manager("c", 4), manager("d", 4)])
    assert sorted(len(v) for v in out.values()) == [1, 1, 1, 1]


def test_assign_prefers_manager_with_most_free_credits():
    out = assign(deque([task("t0")]), [manager("a", 1), manager("b", 5)])
    assert list(out) == [b"b"]


def test_assign_prefers_matching_container():
    warm = manager("warm", 2, ("img",))
    out = assign(deque([task("t0", "img"), task("t1")]), [manager("x", 10), warm])
    assert ids(out[b"warm"]) == ["t0"]  # only the warm manager runs "img"
    assert ids(out[b"x"]) == ["t1"]  # the plain task goes to the one with most credits


def test_assign_container_match_beats_credits():
    out = assign(deque([task("t0", "img")]),
                 [manager("big", 100, ("", "other", "img2")), manager("small", 1, ("", "img"))])
    assert list(out) == [b"small"]


def test_assign_plain_task_goes_anywhere():
    out = assign(deque([task("t0")]), [manager("c", 1, ("img",))])
    assert ids(out[b"c"]) == ["t0"]


def test_assign_unservable_tasks_stay_pending_in_order():
    pending = deque([task("u0", "nowhere"), task("t0"), task("u1", "nowhere"), task("t1"),
                     task("u2", "nowhere"), task("t2")])
    out = assign(pending, [manager("a", 2, accepts_containers=False)])
    assert ids(out[b"a"]) == ["t0", "t1"]
    # skipped unservable tasks, then the ones never examined: original order
    assert ids(pending) == ["u0", "u1", "u2", "t2"]


def test_assign_unservable_only():
    pending = deque([task("u0", "x"), task("u1", "y")])
    assert assign(pending, [manager("a", 5, accepts_containers=False)]) == {}
    assert ids(pending) == ["u0", "u1"]


def test_assign_container_tasks_prefer_a_warm_manager():
    pending = deque([task("c0", "img"), task("c1", "img"), task("p0")])
    out = assign(pending, [manager("cold", 5), manager("warm", 2, containers=("", "img"))])
    assert ids(out[b"warm"]) == ["c0", "c1"]  # warm first, though it has fewer credits
    assert ids(out[b"cold"]) == ["p0"]


@pytest.mark.parametrize("container,slots,expected", [
    ("", [(0, "", True, False)], ("send", 0)),
    ("img", [(0, "", True, False), (1, "img", True, False)], ("send", 1)),
    ("img", [(0, "", True, False)], ("respawn", 0)),
    ("img", [(0, "img", False, False), (1, "", True, False)], ("wait", None)),  # one starting
    ("img", [(0, "", True, True)], ("wait", None)),  # all busy
    ("", [(0, "img", True, False)], ("respawn", 0)),  # back to a plain worker
])
def test_pick_worker(container, slots, expected):
    from endpoint.scheduling import SlotView, pick_worker

    assert pick_worker(container, [SlotView(*s) for s in slots]) == expected


# ----------------------------------------------------------- lost managers
def test_lost_manager_retries_then_fails():
    m = manager("m1", 2)
    t = task("t0")
    m.tasks = {"t0": t}
    retry, failed = lost_manager_tasks(m, max_retries=2)
    assert ids(retry) == ["t0"] and failed == [] and t.attempt == 1
    retry, failed = lost_manager_tasks(m, max_retries=2)
    assert ids(retry) == ["t0"] and failed == [] and t.attempt == 2
    retry, failed = lost_manager_tasks(m, max_retries=2)
    assert retry == []
    assert len(failed) == 1
    r = failed[0]
    assert isinstance(r, Result)
    assert r.task_id == "t0" and r.status == "failed" and r.task_group_id == "g"
    assert "ManagerLost" in r.data
    assert "m1" in r.data


def test_lost_manager_zero_retries_fails_immediately():
    m = manager("m1", 2)
    m.tasks = {"a": task("a"), "b": task("b")}
    retry, failed = lost_manager_tasks(m, max_retries=0)
    assert retry == []
    assert sorted(r.task_id for r in failed) == ["a", "b"]
    assert all("ManagerLost" in r.data for r in failed)


def test_lost_manager_mixed_attempts():
    m = manager("m1", 2)
    fresh, tired = task("fresh"), task("tired")
    tired.attempt = 1
    m.tasks = {"fresh": fresh, "tired": tired}
    retry, failed = lost_manager_tasks(m, max_retries=1)
    assert ids(retry) == ["fresh"]
    assert [r.task_id for r in failed] == ["tired"]


def test_lost_manager_without_tasks():
    assert lost_manager_tasks(manager("m", 1), max_retries=1) == ([], [])


# ---------------------------------------------------------------- strategy
def si(outstanding=0, blocks=0, wpb=4, min_blocks=0, max_blocks=10, idle_for=0.0,
       max_idletime=60.0) -> ScalingInput:
    return ScalingInput(outstanding=outstanding, blocks=blocks, workers_per_block=wpb,
                        min_blocks=min_blocks, max_blocks=max_blocks, idle_for=idle_for,
                        max_idletime=max_idletime)


@pytest.mark.parametrize("case, inp, expected", [
    # scale out to cover outstanding tasks
    ("one task, no blocks", si(outstanding=1), 1),
    ("exactly one block's worth", si(outstanding=4), 1),
    ("one more than a block", si(outstanding=5), 2),
    ("partial coverage", si(outstanding=12, blocks=1), 2),
    ("capped by max_blocks", si(outstanding=1000, blocks=2, max_blocks=5), 3),
    ("already at max_blocks", si(outstanding=1000, blocks=5, max_blocks=5), 0),
    ("unknown workers per block counts as 1", si(outstanding=3, wpb=0), 3),
    ("enough blocks already", si(outstanding=8, blocks=2), 0),
    ("more blocks than needed, busy: no scale in", si(outstanding=1, blocks=4, idle_for=999), 0),
    # keep min_blocks
    ("below min_blocks", si(blocks=0, min_blocks=2), 2),
    ("below min_blocks while idle", si(blocks=1, min_blocks=3, idle_for=999), 2),
    ("outstanding fits in min_blocks", si(outstanding=1, blocks=2, min_blocks=2), 0),
    # scale in only after max_idletime with nothing outstanding
    ("idle long enough", si(blocks=4, min_blocks=1, idle_for=60.0), -3),
    ("idle long enough, min 0", si(blocks=2, idle_for=100.0), -2),
    ("idle not long enough", si(blocks=4, min_blocks=1, idle_for=59.9), 0),
    ("idle at min_blocks", si(blocks=1, min_blocks=1, idle_for=1e6), 0),
    ("nothing at all", si(), 0),
])
def test_decide(case, inp, expected):
    assert decide(inp) == expected, case


def test_decide_never_exceeds_max_blocks():
    for out in range(0, 200, 7):
        for blocks in range(0, 6):
            s = si(outstanding=out, blocks=blocks, max_blocks=5, min_blocks=1)
            assert blocks + decide(s) <= max(5, blocks)
            assert blocks + decide(s) >= 1  # min_blocks is kept
