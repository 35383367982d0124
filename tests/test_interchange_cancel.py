"""Cancelling at the interchange (issue 16, "stop anything"): the pure
transitions of endpoint/interchange_state.py for a cancel that finds its task
queued in the interchange, held back for a lost manager, booked to a manager
(queued there or running), held by a re-registering manager, or not arrived
yet.  No ZeroMQ, no threads."""
from __future__ import annotations

import pytest
from test_interchange_state import (
    THRESHOLD,
    launching,
    of,
    ok,
    outputs,
    queue,
    register,
    sent,
    state,
    task,
)

from endpoint.interchange_state import (
    CancelRequested,
    Dropped,
    Output,
    Registered,
    ResultsFrom,
    RunningFrom,
    SendCancel,
    SendTasks,
    TasksQueued,
    Tick,
)
from funcx.protocol.messages import StatusUpdate


def cancel(s, *tids: str) -> list:
    return s.handle(CancelRequested(list(tids)))


def test_a_task_queued_in_the_interchange_is_dropped_and_never_sent():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0", "t1")  # t0 to m1, t1 waits
    assert cancel(s, "t1") == []  # nobody holds it: nothing to kill
    assert [t.task_id for t in s.pending] == [] and s.stats["cancelled"] == 1
    s.handle(ResultsFrom(b"m1", [ok("t0")], 0.5))  # a credit comes back
    assert sent(s.handle(Tick(0.6))) == {}  # t1 is never sent


def test_a_task_booked_to_a_manager_is_killed_there_and_its_credit_returned():
    s = state()
    register(s, b"m1", capacity=2)
    queue(s, "t0", "t1", "t2")
    m = s.managers[b"m1"]
    assert m.credits == 0
    out = cancel(s, "t0")
    assert out == [SendCancel(b"m1", ["t0"])]
    assert list(m.tasks) == ["t1"] and m.credits == 1
    assert sent(s.handle(Tick(0.1))) == {b"m1": ["t2"]}  # the freed credit serves the queue
    assert s.outstanding() == 2


def test_a_late_result_of_a_killed_run_is_refused_once_and_costs_no_credit():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    cancel(s, "t0")
    out = s.handle(ResultsFrom(b"m1", [ok("t0")], 0.5))
    assert outputs(out) == [] and of(out, Dropped)[0].task_ids == ["t0"]
    assert s.managers[b"m1"].credits == 1
    # in flight when it was cancelled: routine, not a misbehaving manager
    assert s.stats["foreign_results"] == 0 and s.stats["cancelled_late"] == 1
    assert of(out, Dropped)[0].routine


def test_a_running_report_in_flight_when_cancelled_is_not_counted_as_foreign():
    s = state()
    register(s, b"m1", capacity=2)
    queue(s, "t0", "t1")
    cancel(s, "t0")
    out = s.handle(RunningFrom(b"m1", ["t0", "t1", "stranger"], 0.5))
    assert outputs(out) == [StatusUpdate("running", ["t1"])]
    drops = {tuple(d.task_ids): d.routine for d in of(out, Dropped)}
    assert drops == {("t0",): True, ("stranger",): False}
    assert s.stats["foreign_running"] == 1 and s.stats["cancelled_late"] == 1


def test_a_result_for_a_never_dispatched_task_is_still_foreign():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    out = s.handle(ResultsFrom(b"m1", [ok("stranger")], 0.5))
    assert [d.routine for d in of(out, Dropped)] == [False]
    assert s.stats["foreign_results"] == 1 and s.stats["cancelled_late"] == 0


def test_cancels_are_grouped_per_manager():
    s = state()
    register(s, b"m1", capacity=2)
    register(s, b"m2", capacity=2)
    queue(s, "a", "b", "c", "d")
    booked = {mid: sorted(m.tasks) for mid, m in s.managers.items()}
    out = cancel(s, "a", "b", "c", "d", "unknown")
    assert {i.mid: sorted(i.task_ids) for i in out} == booked
    assert all(not m.tasks for m in s.managers.values())


def test_a_task_cancelled_before_it_arrives_is_dropped_when_it_does():
    """The agent may pass a cancel on before the task itself (a take in progress)."""
    s = state()
    register(s, b"m1", capacity=2)
    assert cancel(s, "t0") == []
    assert s.handle(TasksQueued([task("t0"), task("t1")])) == []
    out = s.handle(Tick(0.1))
    assert sent(out) == {b"m1": ["t1"]} and launching(out) == ["t1"]


def test_a_lost_managers_parked_task_is_dropped():
    s = state()
    s.hold_lost = THRESHOLD
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    s.handle(Tick(THRESHOLD + 1))  # m1 lost: t0 parked for it
    assert "t0" in s.parked
    assert cancel(s, "t0") == [] and s.parked == {}
    assert s.outstanding() == 0


def test_a_reregistering_manager_holding_a_cancelled_task_is_told_to_kill_it():
    """A manager cut off (or an agent restarted) while the task was cancelled
    claims it when it registers: it is told to kill it, with its credit back,
    and its result, if one comes, is refused."""
    s = state()
    assert cancel(s, "t0") == []  # the agent learned of it first
    out = register(s, b"m1", capacity=2, held=["t0", "t1"])
    assert [type(i) for i in out] == [Registered, SendCancel]
    assert out[1] == SendCancel(b"m1", ["t0"])
    assert out[0].awaited == ["t1"] and s.managers[b"m1"].credits == 1
    assert "t0" not in s.awaiting


def test_an_awaited_held_task_cancelled_is_killed_on_its_holder():
    """A restarted agent has not handed the task over yet; the manager that
    still runs it is told to kill it."""
    s = state()
    register(s, b"m1", capacity=2, held=["t0"])
    assert s.managers[b"m1"].credits == 1
    out = cancel(s, "t0")
    assert out == [SendCancel(b"m1", ["t0"])]
    assert s.awaiting == {} and s.managers[b"m1"].credits == 2
    assert s.handle(TasksQueued([task("t0")])) == []  # arriving now: dropped
    assert s.pending == type(s.pending)()


def test_an_early_result_of_a_cancelled_task_is_never_passed_on():
    s = state()
    register(s, b"m1", capacity=2, held=["t0"])
    s.handle(ResultsFrom(b"m1", [ok("t0")], 0.5))  # kept until its task arrives
    assert "t0" in s.early
    cancel(s, "t0")
    assert s.early == {}
    assert s.handle(TasksQueued([task("t0")])) == []


def test_tasks_queued_behind_busy_workers_are_waiting_for_launch_once():
    """Queued at a live endpoint behind busy workers is waiting-for-launch
    (said once, not at every tick); with no manager at all it is left to the
    agent's waiting-for-nodes."""
    s = state()
    queue(s, "n0")
    assert launching(s.handle(Tick(0.1))) == []  # no manager: not said here
    register(s, b"m1", capacity=1)
    out = queue(s, "t0", "t1", now=0.2)
    assert launching(out) == ["n0", "t0", "t1"]  # n0 handed out, t0 and t1 queued
    assert sent(out) == {b"m1": ["n0"]}
    assert [i for o in of(s.handle(Tick(0.3)), Output) for i in o.items] == []


def test_an_empty_cancel_does_nothing():
    s = state()
    assert cancel(s) == [] and s.stats["cancelled"] == 0


def test_cancelled_ids_are_remembered_within_a_bound(monkeypatch):
    import endpoint.interchange_state as ist

    monkeypatch.setattr(ist, "MAX_CANCELLED", 3)
    s = state()
    cancel(s, "a")
    cancel(s, "b")
    cancel(s, "c")
    cancel(s, "d")
    assert list(s.cancelled) == ["b", "c", "d"]


def test_status_updates_are_not_made_for_cancelled_queued_tasks():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    s.handle(TasksQueued([task("t1")]))
    cancel(s, "t1")
    out = s.handle(Tick(0.1))
    assert not any(isinstance(i, StatusUpdate) and "t1" in i.task_ids
                   for o in of(out, Output) for i in o.items)
    assert of(out, SendTasks) == []


# ---------------------------------------------------- the CANCEL message itself
def test_the_cancel_message_round_trips():
    from funcx.protocol.messages import Kind, pack, unpack

    msg = unpack(pack(Kind.CANCEL, ["t1", "t-2"]))
    assert msg.kind == Kind.CANCEL and msg.header == ["t1", "t-2"]


@pytest.mark.parametrize("header", [b"[]", b"null", b'"t1"', b"[1]", b'["bad id!"]',
                                    b'["' + b"x" * 65 + b'"]', b"{}"])
def test_a_malformed_cancel_header_is_refused(header):
    from funcx.protocol.messages import VERSION, Kind, ProtocolError, unpack

    with pytest.raises(ProtocolError, match="CANCEL header"):
        unpack([bytes([VERSION]) + Kind.CANCEL, header])


def test_a_manager_sending_cancel_is_refused_as_stray():
    from endpoint.interchange_state import StrayMessage
    from funcx.protocol.messages import Kind

    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    out = s.handle(StrayMessage(b"m1", Kind.CANCEL, 0.5))
    assert [type(i) for i in out] == [Dropped] and "CANCEL" in out[0].why
    assert list(s.managers[b"m1"].tasks) == ["t0"]  # nothing was cancelled


def test_a_queued_task_said_waiting_is_not_said_again_when_sent():
    """One write per task: reported waiting-for-launch when it queued behind
    busy workers, nothing more when a worker frees up and it is sent."""
    s = state()
    register(s, b"m1", capacity=1)
    assert launching(queue(s, "t0", "t1")) == ["t0", "t1"]
    out = s.handle(ResultsFrom(b"m1", [ok("t0")], 0.5)) + s.handle(Tick(0.6))
    assert sent(out) == {b"m1": ["t1"]} and launching(out) == []
    assert s.said_waiting == set()
