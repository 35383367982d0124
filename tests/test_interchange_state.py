"""The interchange's pure state machine (endpoint/interchange_state.py), driven
through every path with no ZeroMQ and no threads: the events stand for what
managers and the agent send and for time passing, the instructions are
checked for what the interchange's socket shell would do."""
from __future__ import annotations

import pytest

from endpoint.interchange_state import (
    AskRegister,
    BadMessage,
    Dropped,
    HeartbeatFrom,
    InterchangeState,
    Lost,
    ManagerRegistered,
    Output,
    Registered,
    ResultsFrom,
    RunningFrom,
    SendFailed,
    SendHeartbeat,
    SendTasks,
    Stalled,
    StrayMessage,
    TasksQueued,
    Tick,
)
from funcx.protocol.messages import (
    Heartbeat,
    Kind,
    Register,
    Result,
    StatusUpdate,
    Task,
)
from funcx.protocol.states import TaskState

PERIOD, THRESHOLD, RETRIES = 1.0, 5.0, 1
RUNNING = TaskState.RUNNING.value


def task(tid: str, container: str = "", group: str = "g") -> Task:
    return Task(task_id=tid, function_id="f", payload="p", task_group_id=group,
                container_id=container)


def ok(tid: str, group: str = "") -> Result:
    return Result(task_id=tid, status=TaskState.SUCCESS.value, data=f"v-{tid}",
                  task_group_id=group)


def of(out: list, kind: type) -> list:
    return [i for i in out if isinstance(i, kind)]


def sent(out: list) -> dict[bytes, list[str]]:
    return {i.mid: [t.task_id for t in i.tasks] for i in of(out, SendTasks)}


def outputs(out: list) -> list:
    """What goes to the agent, less the waiting-for-launch notes every dispatch makes."""
    return [item for i in of(out, Output) for item in i.items
            if not (isinstance(item, StatusUpdate) and item.status == "waiting-for-launch")]


def launching(out: list) -> list[str]:
    return [t for i in of(out, Output) for item in i.items
            if isinstance(item, StatusUpdate) and item.status == "waiting-for-launch"
            for t in item.task_ids]


def state(now: float = 0.0, retries: int = RETRIES) -> InterchangeState:
    return InterchangeState(PERIOD, THRESHOLD, retries, now)


def register(s: InterchangeState, mid: bytes, capacity: int = 2, now: float = 0.0,
             containers: tuple[str, ...] = ("",), block: str = "b0",
             held: list[str] | None = None, base: int = 0, hand: bool = False) -> list:
    reg = Register(manager_id=mid.decode(), workers=capacity, capacity=capacity,
                   block_id=block, hostname=f"host-{mid.decode()}", pid=42,
                   containers=list(containers), held=held or [], results_base=base,
                   hand_started=hand)
    return s.handle(ManagerRegistered(mid, reg, now))


def queue(s: InterchangeState, *tids: str, container: str = "", now: float = 0.0) -> list:
    assert s.handle(TasksQueued([task(t, container) for t in tids])) == []  # no dispatch yet
    return s.handle(Tick(now))


# ------------------------------------------------------------ registration
def test_register_books_the_manager():
    s = state()
    out = register(s, b"m1", capacity=3, containers=("", "img"))
    assert [type(i) for i in out] == [Registered]
    m = s.managers[b"m1"]
    assert out[0].manager is m
    assert (m.credits, m.workers, m.block_id, m.hostname, m.pid) == (3, 3, "b0", "host-m1", 42)
    assert m.containers == ("", "img") and m.last_heard == 0.0 and m.tasks == {}


def test_second_register_keeps_what_it_holds():
    """A reconnect shorter than the threshold: the tasks it still holds stay
    booked to it, with its credits counted from what it holds."""
    s = state()
    register(s, b"m1", capacity=2)
    queue(s, "t0")
    out = register(s, b"m1", capacity=50, now=3.0, held=["t0"])
    assert [type(i) for i in out] == [Registered]
    assert out[0].again and out[0].kept == ["t0"] and out[0].requeued == []
    m = s.managers[b"m1"]
    assert m.credits == 1 and list(m.tasks) == ["t0"]  # capacity as first registered, not 50
    assert m.last_heard == 3.0  # it was heard from
    assert sent(s.handle(Tick(3.1))) == {}  # not sent again


@pytest.mark.parametrize("event", [
    ResultsFrom(b"ghost", [ok("t0")], 1.0),
    RunningFrom(b"ghost", ["t0"], 1.0),
    HeartbeatFrom(b"ghost", None, 1.0),
    StrayMessage(b"ghost", Kind.TASKS, 1.0),
])
def test_messages_from_unregistered_managers_are_dropped(event):
    s = state()
    register(s, b"m1")
    queue(s, "t0")
    out = s.handle(event)
    asked = [AskRegister] if isinstance(event, HeartbeatFrom) else []  # alive: told to register
    assert [type(i) for i in out] == [Dropped, *asked]
    assert out[0].mid == b"ghost" and "before registering" in out[0].why
    assert s.stats["unregistered"] == 1
    assert b"ghost" not in s.managers and list(s.managers[b"m1"].tasks) == ["t0"]


# ---------------------------------------------------------------- dispatch
def test_tasks_wait_for_a_manager():
    s = state()
    assert queue(s, "t0", "t1") == []
    assert [t.task_id for t in s.pending] == ["t0", "t1"]
    assert s.outstanding() == 2
    out = register(s, b"m1")
    assert of(out, SendTasks) == []  # dispatch happens on the tick
    assert sent(s.handle(Tick(0.1))) == {b"m1": ["t0", "t1"]}


def test_dispatch_by_credit():
    s = state()
    register(s, b"a", capacity=2)
    register(s, b"b", capacity=3)
    out = queue(s, *(f"t{i}" for i in range(8)))
    batches = sent(out)
    assert len(batches[b"a"]) == 2 and len(batches[b"b"]) == 3
    assert [t.task_id for t in s.pending] == ["t5", "t6", "t7"]
    assert s.managers[b"a"].credits == 0 and s.managers[b"b"].credits == 0
    assert set(s.managers[b"a"].tasks) == set(batches[b"a"])
    assert s.outstanding() == 8
    assert of(s.handle(Tick(0.2)), SendTasks) == []  # no credit left: nothing more


def test_dispatch_by_container():
    s = state()
    register(s, b"cold", capacity=5)
    register(s, b"warm", capacity=1, containers=("", "img"))
    s.handle(TasksQueued([task("c0", "img"), task("p0")]))
    batches = sent(s.handle(Tick(0.0)))
    assert batches == {b"warm": ["c0"], b"cold": ["p0"]}


def test_results_return_credits_and_reach_the_agent():
    s = state()
    register(s, b"m1", capacity=1)
    assert sent(queue(s, "t0", "t1")) == {b"m1": ["t0"]}
    out = s.handle(ResultsFrom(b"m1", [ok("t0", group="forged")], 1.0))
    [r] = outputs(out)
    assert r.task_id == "t0" and r.task_group_id == "g"  # from the task, never the message
    assert of(out, Dropped) == []
    assert s.managers[b"m1"].credits == 1 and s.managers[b"m1"].last_heard == 1.0
    assert sent(s.handle(Tick(1.0))) == {b"m1": ["t1"]}  # the returned credit is spent


def test_results_for_tasks_not_dispatched_to_the_sender_are_dropped():
    s = state()
    register(s, b"legit", capacity=1)
    register(s, b"evil", capacity=1)
    s.handle(TasksQueued([task("victim")]))
    s.managers[b"evil"].credits = 0  # make sure the victim goes to legit
    assert sent(s.handle(Tick(0.0))) == {b"legit": ["victim"]}
    out = s.handle(ResultsFrom(b"evil", [ok("victim"), ok("nobody")], 1.0))
    assert outputs(out) == []
    [d] = of(out, Dropped)
    assert d.mid == b"evil" and d.task_ids == ["victim", "nobody"]
    assert "not dispatched to it" in d.why
    assert s.stats["foreign_results"] == 2
    assert "victim" in s.managers[b"legit"].tasks  # still the legit manager's
    assert s.managers[b"evil"].credits == 0  # no credit for foreign results
    [r] = outputs(s.handle(ResultsFrom(b"legit", [ok("victim")], 2.0)))
    assert r.task_id == "victim"


def test_duplicate_results_are_dropped():
    s = state()
    register(s, b"m1", capacity=2)
    queue(s, "t0")
    out = s.handle(ResultsFrom(b"m1", [ok("t0"), ok("t0")], 1.0))
    assert [r.task_id for r in outputs(out)] == ["t0"]
    assert of(out, Dropped)[0].task_ids == ["t0"]
    out = s.handle(ResultsFrom(b"m1", [ok("t0")], 2.0))  # a late repeat
    assert outputs(out) == [] and of(out, Dropped)[0].task_ids == ["t0"]
    assert s.stats["foreign_results"] == 2
    assert s.managers[b"m1"].credits == 2  # credited once


def test_running_notices_only_for_dispatched_tasks():
    s = state()
    register(s, b"a", capacity=2)
    register(s, b"b", capacity=0)
    queue(s, "t0", "t1")
    out = s.handle(RunningFrom(b"a", ["t0", "t0", "other"], 1.0))
    assert outputs(out) == [StatusUpdate(RUNNING, ["t0"])]
    [d] = of(out, Dropped)
    assert d.task_ids == ["t0", "other"]  # the repeat and the stranger
    assert s.stats["foreign_running"] == 2  # the repeat and the stranger
    out = s.handle(RunningFrom(b"b", ["t1"], 1.0))  # not b's task
    assert outputs(out) == [] and s.stats["foreign_running"] == 3
    assert s.managers[b"b"].last_heard == 1.0


def test_heartbeat_keeps_alive_and_updates_containers():
    s = state()
    register(s, b"m1")
    assert s.handle(HeartbeatFrom(b"m1", None, 1.0)) == []
    assert s.managers[b"m1"].containers == ("",) and s.managers[b"m1"].last_heard == 1.0
    s.handle(HeartbeatFrom(b"m1", Heartbeat(t=5.0), 2.0))
    assert s.managers[b"m1"].containers == ("",)  # no news of containers
    s.handle(HeartbeatFrom(b"m1", Heartbeat(containers=["img"]), 3.0))
    assert s.managers[b"m1"].containers == ("img",)
    assert of(s.handle(Tick(3.0 + THRESHOLD)), Lost) == []  # heard at 3.0
    assert b"m1" in s.managers


def test_stray_and_bad_messages_are_counted():
    s = state()
    register(s, b"m1")
    out = s.handle(StrayMessage(b"m1", Kind.READY, 1.0))
    assert "READY" in out[0].why and s.stats["bad_messages"] == 1
    assert s.handle(BadMessage(b"anyone")) == [] and s.stats["bad_messages"] == 2
    assert s.managers[b"m1"].last_heard == 1.0


# ------------------------------------------------------------ heartbeats
def test_heartbeats_every_period():
    s = state()
    assert of(s.handle(Tick(0.0)), SendHeartbeat) == []  # nobody to send to
    register(s, b"a")
    register(s, b"b")
    assert of(s.handle(Tick(0.5)), SendHeartbeat) == []  # the period started at 0.0
    [beat] = of(s.handle(Tick(1.0)), SendHeartbeat)
    assert sorted(beat.mids) == [b"a", b"b"]
    assert of(s.handle(Tick(1.5)), SendHeartbeat) == []


# ----------------------------------------------------------- lost managers
def test_lost_manager_tasks_are_redispatched_with_attempt_plus_one():
    s = state(retries=1)
    register(s, b"dead", capacity=2)
    queue(s, "t0", "t1")
    register(s, b"live", capacity=2, now=4.0)
    assert of(s.handle(Tick(THRESHOLD)), Lost) == []  # exactly the threshold: not yet
    out = s.handle(Tick(THRESHOLD + 0.5))
    [lost] = of(out, Lost)
    assert lost.manager.manager_id == b"dead" and lost.retried == 2
    assert lost.silent_for == pytest.approx(THRESHOLD + 0.5)
    assert b"dead" not in s.managers
    assert sent(out) == {b"live": ["t0", "t1"]}  # re-sent in order by the same tick
    assert [t.attempt for t in s.managers[b"live"].tasks.values()] == [1, 1]
    assert outputs(out) == []


def test_lost_manager_tasks_beyond_retries_fail_with_manager_lost():
    s = state(retries=1)
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    out = s.handle(Tick(THRESHOLD + 1))  # attempt 1: queued again, no manager now
    assert [t.task_id for t in s.pending] == ["t0"] and s.pending[0].attempt == 1
    assert outputs(out) == []
    register(s, b"m2", capacity=1, now=10.0)
    assert sent(s.handle(Tick(10.0))) == {b"m2": ["t0"]}
    out = s.handle(Tick(10.0 + THRESHOLD + 1))  # attempt 2 > 1 retry: failed
    [lost] = of(out, Lost)
    assert lost.retried == 0
    [r] = outputs(out)
    assert r.task_id == "t0" and r.status == TaskState.FAILED.value and r.task_group_id == "g"
    assert "ManagerLost" in r.data and "m2" in r.data
    assert s.outstanding() == 0 and not s.pending


def test_results_of_a_lost_manager_are_dropped():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    s.handle(Tick(THRESHOLD + 1))
    out = s.handle(ResultsFrom(b"m1", [ok("t0")], THRESHOLD + 2))
    assert outputs(out) == [] and s.stats["unregistered"] == 1
    assert [t.task_id for t in s.pending] == ["t0"]  # it runs again elsewhere


# ------------------------------------------------------------ send failure
def test_send_failure_requeues_first_and_restores_credits():
    s = state()
    register(s, b"m1", capacity=2)
    s.handle(TasksQueued([task("t0"), task("t1"), task("t2")]))
    [send] = of(s.handle(Tick(0.0)), SendTasks)
    assert [t.task_id for t in send.tasks] == ["t0", "t1"]
    assert s.handle(SendFailed(send.mid, send.tasks)) == []
    assert [t.task_id for t in s.pending] == ["t0", "t1", "t2"]  # in order, at the front
    m = s.managers[b"m1"]
    assert m.credits == 2 and m.tasks == {}
    assert s.outstanding() == 3
    assert sent(s.handle(Tick(0.1))) == {b"m1": ["t0", "t1"]}  # tried again


def test_send_failure_for_a_forgotten_manager_changes_nothing():
    s = state()
    register(s, b"m1", capacity=1)
    [send] = of(queue(s, "t0"), SendTasks)
    s.handle(Tick(THRESHOLD + 1))  # lost: t0 is queued again already
    assert s.handle(SendFailed(send.mid, send.tasks)) == []
    assert [t.task_id for t in s.pending] == ["t0"]  # once, not twice


# ---------------------------------------------------- idle, status, scale-in
def test_idle_since():
    s = state(now=100.0)
    assert s.idle_since == 100.0
    s.handle(Tick(101.0))
    assert s.idle_since == 100.0  # nothing outstanding: still idle since 100
    queue(s, "t0", now=102.0)
    assert s.idle_since == 102.0  # pending
    register(s, b"m1", now=103.0)
    s.handle(Tick(103.0))
    assert s.idle_since == 103.0  # dispatched, not answered
    s.handle(ResultsFrom(b"m1", [ok("t0")], 104.0))
    s.handle(Tick(105.0))
    assert s.idle_since == 103.0


def test_snapshot_busy_blocks_and_outstanding():
    s = state()
    register(s, b"m1", capacity=2, block="b1", containers=("", "img"))
    register(s, b"m2", capacity=3, block="b2")
    s.managers[b"m2"].credits = 0
    queue(s, "t0", "t1", "t2")
    snap = s.snapshot()
    assert snap == {
        "managers": 2, "total_workers": 5, "idle_workers": 3,
        "pending_tasks_in_interchange": 1, "running_tasks": 2,
        "manager_details": [
            {"manager_id": "m1", "block_id": "b1", "hostname": "host-m1", "pid": 42,
             "workers": 2, "tasks": 2, "containers": ["", "img"], "hand_started": False},
            {"manager_id": "m2", "block_id": "b2", "hostname": "host-m2", "pid": 42,
             "workers": 3, "tasks": 0, "containers": [""], "hand_started": False},
        ],
    }
    assert s.busy_blocks() == {"b1"}
    assert s.outstanding() == 3
    s.handle(ResultsFrom(b"m1", [ok("t0"), ok("t1")], 1.0))
    assert s.busy_blocks() == set()
    assert s.outstanding() == 1


def test_empty_snapshot():
    snap = state().snapshot()
    assert snap["managers"] == 0 and snap["idle_workers"] == 0 and snap["manager_details"] == []


def test_dispatched_tasks_are_waiting_for_launch_until_running():
    s = state()
    register(s, b"m1", capacity=2)
    out = queue(s, "t0", "t1", "t2")
    assert sent(out) == {b"m1": ["t0", "t1"]}  # by credit: t2 waits in the interchange
    # t2 waits behind busy workers at a live endpoint: waiting for one (issue 16)
    assert launching(out) == ["t0", "t1", "t2"]
    assert launching(s.handle(Tick(0.2))) == []  # nothing new handed out, nothing said
    run = s.handle(RunningFrom(b"m1", ["t0"], 0.3))
    assert outputs(run) == [StatusUpdate(RUNNING, ["t0"])]


# ------------------------------------------------ links that come back (15)
def lose(s: InterchangeState, now: float = THRESHOLD + 1) -> list:
    """Let every registered manager fall silent past the threshold."""
    out = s.handle(Tick(now))
    assert of(out, Lost)
    return out


def test_heartbeats_acknowledge_the_results_received():
    s = state()
    register(s, b"m1", capacity=2, base=7)
    queue(s, "t0", "t1")
    s.handle(ResultsFrom(b"m1", [ok("t0"), ok("ghost")], 0.5))  # a refused one counts too
    [beat] = of(s.handle(Tick(1.0)), SendHeartbeat)
    assert beat.acked == {b"m1": 9}


def test_reconnect_after_lost_reattaches_and_refunds_the_retry():
    """Declared lost, its tasks re-queued and not yet sent elsewhere: the manager
    comes back holding them; they are booked back to it, not sent again, the
    retry is given back, and each result is recorded once."""
    s = state(retries=1)
    register(s, b"m1", capacity=2)
    queue(s, "t0", "t1")
    lose(s)
    assert [t.attempt for t in s.pending] == [1, 1]
    now = THRESHOLD + 2
    [reg] = register(s, b"m1", capacity=2, now=now, held=["t0", "t1"])
    assert not reg.again and sorted(reg.reattached) == ["t0", "t1"] and reg.refunded == 2
    assert not s.pending and sorted(s.managers[b"m1"].tasks) == ["t0", "t1"]
    assert [t.attempt for t in s.managers[b"m1"].tasks.values()] == [0, 0]
    assert s.managers[b"m1"].credits == 0
    assert sent(s.handle(Tick(now))) == {}  # it has them: nothing is sent twice
    out = s.handle(ResultsFrom(b"m1", [ok("t0"), ok("t1"), ok("t0")], now + 0.1))
    assert [r.task_id for r in outputs(out)] == ["t0", "t1"]  # the repeat is refused
    assert of(out, Dropped)[0].task_ids == ["t0"]
    assert s.outstanding() == 0 and s.managers[b"m1"].credits == 2
    # a second cut now burns no retry: attempt 0 -> 1 <= retries, still re-queued
    queue(s, "t2", now=now + 0.2)
    lose(s, now + THRESHOLD + 1)
    assert [(t.task_id, t.attempt) for t in s.pending] == [("t2", 1)]


def test_reattached_task_refund_only_for_the_manager_it_was_lost_from():
    s = state(retries=2)
    register(s, b"a", capacity=1)
    queue(s, "t0")
    lose(s)
    [reg] = register(s, b"b", capacity=1, now=THRESHOLD + 2, held=["t0"])  # a stranger claims it
    assert reg.reattached == ["t0"] and reg.refunded == 0
    assert s.managers[b"b"].tasks["t0"].attempt == 1


def test_held_task_redispatched_elsewhere_is_refused():
    """Re-dispatched to another manager before the first came back: the first's
    claim is refused, its later result dropped, the other's result counts."""
    s = state(retries=1)
    register(s, b"a", capacity=1)
    queue(s, "t0")
    register(s, b"b", capacity=1, now=THRESHOLD)
    out = s.handle(Tick(THRESHOLD + 1))  # a lost, t0 goes to b
    assert sent(out) == {b"b": ["t0"]}
    [reg] = register(s, b"a", capacity=1, now=THRESHOLD + 2, held=["t0"])
    assert reg.refused == ["t0"] and reg.reattached == []
    assert s.managers[b"a"].credits == 0  # its worker is still busy with it
    out = s.handle(ResultsFrom(b"a", [ok("t0")], THRESHOLD + 3))
    assert outputs(out) == [] and of(out, Dropped)[0].task_ids == ["t0"]
    assert s.managers[b"a"].credits == 1  # its worker is free again
    out = s.handle(ResultsFrom(b"b", [ok("t0")], THRESHOLD + 3))
    assert [r.task_id for r in outputs(out)] == ["t0"]


def test_held_task_already_finished_is_refused():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    assert [r.task_id for r in outputs(s.handle(ResultsFrom(b"m1", [ok("t0")], 1.0)))] == ["t0"]
    # it reconnects before the heartbeat acknowledged that result, so it holds it still
    [reg] = register(s, b"m1", capacity=1, now=2.0, held=["t0"])
    assert reg.again and reg.refused == ["t0"]
    out = s.handle(ResultsFrom(b"m1", [ok("t0")], 2.1))  # the resend
    assert outputs(out) == [] and s.stats["foreign_results"] == 1
    assert s.managers[b"m1"].credits == 1


def test_short_reconnect_requeues_what_never_reached_it_without_a_retry():
    s = state(retries=0)
    register(s, b"m1", capacity=2)
    queue(s, "t0", "t1")
    [reg] = register(s, b"m1", capacity=2, now=1.0, held=["t0"])  # t1 lost in transit
    assert reg.kept == ["t0"] and reg.requeued == ["t1"]
    out = s.handle(Tick(1.0))
    assert sent(out) == {b"m1": ["t1"]}  # sent again, no retry spent (retries=0)
    assert s.managers[b"m1"].tasks["t1"].attempt == 0


def test_tasks_a_manager_holds_after_an_agent_restart_are_booked_to_it():
    """A fresh interchange (agent restarted) hears a manager holding tasks it
    does not know; when the agent hands them over they go to that manager,
    not out fresh, and a result that came first is passed on then."""
    s = state()
    [reg] = register(s, b"m1", capacity=3, held=["t0", "t1"])
    assert sorted(reg.awaited) == ["t0", "t1"] and s.managers[b"m1"].credits == 1
    out = s.handle(ResultsFrom(b"m1", [ok("t1", group="forged")], 0.5))  # before its task
    assert outputs(out) == [] and not of(out, Dropped)
    [early] = s.handle(TasksQueued([task("t0"), task("t1"), task("t2")]))
    [(r)] = early.items
    assert (r.task_id, r.data, r.task_group_id) == ("t1", "v-t1", "g")  # group: the task's
    assert list(s.managers[b"m1"].tasks) == ["t0"]
    assert sent(s.handle(Tick(1.0))) == {b"m1": ["t2"]}  # only the new one is sent
    out = s.handle(ResultsFrom(b"m1", [ok("t0"), ok("t2")], 1.5))
    assert sorted(r.task_id for r in outputs(out)) == ["t0", "t2"]
    assert s.outstanding() == 0 and s.managers[b"m1"].credits == 3


def test_tasks_handed_over_before_the_manager_comes_back_are_reattached():
    s = state()
    s.handle(TasksQueued([task("t0")]))  # the restarted agent reclaimed it first
    [reg] = register(s, b"m1", capacity=1, held=["t0"])
    assert reg.reattached == ["t0"] and reg.refunded == 0 and not s.pending
    assert sent(s.handle(Tick(0.1))) == {}


def test_awaited_holds_of_a_lost_manager_are_forgotten():
    s = state()
    register(s, b"m1", capacity=1, held=["t0"])
    lose(s)
    assert s.awaiting == {}
    register(s, b"m2", capacity=1, now=THRESHOLD + 2)
    s.handle(TasksQueued([task("t0")]))
    assert sent(s.handle(Tick(THRESHOLD + 2))) == {b"m2": ["t0"]}  # sent fresh


def test_hand_started_managers_are_not_the_daemons_blocks():
    s = state()
    register(s, b"blk", block="0")
    register(s, b"hand", block="0", hand=True)
    queue(s, "t0", "t1")
    assert s.block_managers() == [b"blk"]
    assert s.busy_blocks() == {"0"}
    s.handle(ResultsFrom(b"blk", [ok(t) for t in s.managers[b"blk"].tasks], 0.5))
    assert s.busy_blocks() == set()  # the hand-started one's task does not pin block 0
    assert {d["manager_id"]: d["hand_started"] for d in s.snapshot()["manager_details"]} == {
        "blk": False, "hand": True}


def test_a_stalled_interchange_does_not_blame_its_managers():
    """Ticks that stop for longer than ``stall_after`` (the process was stopped):
    the managers get a full threshold from then, and are lost only after it."""
    s = InterchangeState(PERIOD, THRESHOLD, RETRIES, 0.0, stall_after=THRESHOLD / 2)
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    out = s.handle(Tick(THRESHOLD + 10))  # nothing ran for 15 s
    assert of(out, Lost) == [] and of(out, Stalled)[0].seconds == THRESHOLD + 10
    assert list(s.managers[b"m1"].tasks) == ["t0"]
    stalled_at, lost_at = THRESHOLD + 10, None
    for step in range(1, 20):  # time passes normally now, and it stays silent
        now = stalled_at + step * 0.5
        if of(s.handle(Tick(now)), Lost):
            lost_at = now
            break
    assert lost_at == stalled_at + THRESHOLD + 0.5  # a full threshold after the stall
    assert [t.task_id for t in s.pending] == ["t0"]


def test_without_stall_detection_a_long_gap_loses_managers():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    assert of(s.handle(Tick(THRESHOLD + 10)), Lost)


def held_back(now: float = 0.0) -> InterchangeState:
    return InterchangeState(PERIOD, THRESHOLD, 1, now, hold_lost=THRESHOLD)


def test_a_lost_managers_tasks_wait_for_it_before_going_elsewhere():
    """Two managers cut off together come back at different times: each finds
    its own tasks, none runs another's (no double run), no retry is spent."""
    s = held_back()
    register(s, b"a", capacity=1)
    register(s, b"b", capacity=1)
    queue(s, "ta", "tb")
    assert {m: list(x.tasks) for m, x in s.managers.items()} == {b"a": ["ta"], b"b": ["tb"]}
    t = THRESHOLD + 1
    assert len(of(s.handle(Tick(t)), Lost)) == 2 and sorted(s.parked) == ["ta", "tb"]
    register(s, b"a", capacity=1, now=t + 1, held=["ta"])  # a is back first
    assert sent(s.handle(Tick(t + 1))) == {}  # tb waits for b, a has a free credit
    assert sent(s.handle(Tick(t + 1 + THRESHOLD - 0.5))) == {}
    s.handle(HeartbeatFrom(b"a", None, t + THRESHOLD))
    [reg] = register(s, b"b", capacity=1, now=t + THRESHOLD, held=["tb"])  # b, within the hold
    assert reg.reattached == ["tb"] and reg.refunded == 1 and not s.parked
    assert s.managers[b"a"].tasks["ta"].attempt == s.managers[b"b"].tasks["tb"].attempt == 0


def test_a_really_lost_managers_tasks_go_elsewhere_after_the_hold():
    s = held_back()
    register(s, b"a", capacity=1)
    queue(s, "t0")
    t = THRESHOLD + 1
    s.handle(Tick(t))  # a lost: t0 held back; nobody else yet, so the wait has not begun
    assert list(s.parked) == ["t0"] and s.outstanding() == 1
    assert s.snapshot()["pending_tasks_in_interchange"] == 1
    register(s, b"b", capacity=1, now=t + 20)
    assert sent(s.handle(Tick(t + 20))) == {}  # the hold starts now
    assert sent(s.handle(Tick(t + 20 + THRESHOLD - 0.1))) == {}
    s.handle(HeartbeatFrom(b"b", None, t + 20 + THRESHOLD - 0.1))
    out = s.handle(Tick(t + 20 + THRESHOLD))
    assert sent(out) == {b"b": ["t0"]} and s.managers[b"b"].tasks["t0"].attempt == 1
    assert not s.parked


def test_a_forgotten_manager_that_still_beats_is_asked_to_register_once_a_period():
    s = state()
    register(s, b"m1", capacity=1)
    queue(s, "t0")
    lose(s)
    t = THRESHOLD + 1
    assert of(s.handle(HeartbeatFrom(b"m1", None, t)), AskRegister) == [AskRegister(b"m1")]
    assert of(s.handle(HeartbeatFrom(b"m1", None, t + PERIOD / 2)), AskRegister) == []
    assert of(s.handle(HeartbeatFrom(b"m1", None, t + PERIOD)), AskRegister) == [AskRegister(b"m1")]
    register(s, b"m1", capacity=1, now=t + PERIOD, held=["t0"])
    assert b"m1" not in s.asked and list(s.managers[b"m1"].tasks) == ["t0"]


# ------------------------------------------------------ refills in batches (issue 20)
def register_prefetch(s: InterchangeState, mid: bytes, workers: int, capacity: int) -> None:
    reg = Register(manager_id=mid.decode(), workers=workers, capacity=capacity, block_id="b0")
    s.handle(ManagerRegistered(mid, reg, 0.0))


def test_a_manager_with_work_for_each_worker_is_refilled_in_batches():
    """A manager holding a task for each of its workers gets more only once
    half its prefetch of credits is back: one message per few results, not
    one per result; its queue never runs dry, and every task goes out once."""
    from endpoint.interchange_state import refill_batch

    s = state()
    register_prefetch(s, b"m1", workers=2, capacity=12)
    assert refill_batch(12, 2) == 5
    out = queue(s, *[f"t{i}" for i in range(40)])
    assert sent(out) == {b"m1": [f"t{i}" for i in range(12)]}
    shipped = list(sent(out)[b"m1"])
    for i in range(4):  # four results back: it still holds 8, more than its 2 workers
        out = s.handle(ResultsFrom(b"m1", [ok(f"t{i}")], 0.1))
        assert [r.task_id for r in outputs(out)] == [f"t{i}"]
        assert sent(s.handle(Tick(0.1))) == {}
    s.handle(ResultsFrom(b"m1", [ok("t4")], 0.1))  # the fifth: one batch of five
    out = s.handle(Tick(0.1))
    assert sent(out) == {b"m1": [f"t{i}" for i in range(12, 17)]}
    shipped += sent(out)[b"m1"]
    assert len(s.managers[b"m1"].tasks) == 12 and s.managers[b"m1"].credits == 0
    # whatever the order results come back in, each task is sent exactly once
    done = [f"t{i}" for i in range(5)]
    while len(done) < 40:
        held = sorted(s.managers[b"m1"].tasks, key=lambda t: int(t[1:]))
        s.handle(ResultsFrom(b"m1", [ok(held[-1])], 0.2))  # newest first, for a change
        done.append(held[-1])
        shipped += sent(s.handle(Tick(0.2))).get(b"m1", [])
        assert len(s.managers[b"m1"].tasks) >= 2 or len(shipped) == 40  # never dry
    assert sorted(shipped) == sorted(f"t{i}" for i in range(40)) == sorted(done)


def test_a_manager_with_an_idle_worker_gets_a_task_at_once():
    """Below one task per worker there is no waiting for a batch (a lone
    task's latency), and a manager without prefetch is refilled per credit."""
    s = state()
    register_prefetch(s, b"m1", workers=2, capacity=12)
    assert sent(queue(s, "a")) == {b"m1": ["a"]}
    assert sent(queue(s, "b")) == {b"m1": ["b"]}  # holds 1 < 2 workers
    assert sent(queue(s, "c")) == {b"m1": ["c"]}  # holds 2, but 9 credits are free
    s2 = state()
    register_prefetch(s2, b"m2", workers=2, capacity=2)  # no prefetch: batch of 1
    queue(s2, "x", "y", "z")
    s2.handle(ResultsFrom(b"m2", [ok("x")], 0.1))
    assert sent(s2.handle(Tick(0.1))) == {b"m2": ["z"]}
