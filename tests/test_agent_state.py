"""The endpoint agent's pure state machine (endpoint/agent_state.py), driven
through every path with no Redis, no ZeroMQ and no threads: the events stand
for what Redis and the interchange answer, the instructions are checked for
what the agent's I/O shell would do."""
from __future__ import annotations

import pytest

from endpoint.agent_state import (
    NEW,
    PENDING,
    READ_BLOCK_MS,
    Ack,
    AgentState,
    CancelledFlags,
    CancelTasks,
    CheckCancelled,
    ContainerSpecs,
    Dispatch,
    EntriesRead,
    Event,
    Fail,
    FetchContainers,
    FetchFunctions,
    ForgetCancelled,
    FunctionCodes,
    InFlightCancelled,
    Outage,
    Read,
    Reclaiming,
    Report,
    ResultsReady,
    Write,
    WriteCommitted,
)
from endpoint.execute import failure
from funcx.errors import ManagerLost
from funcx.protocol.messages import Result, StatusUpdate, Task
from funcx.protocol.states import TaskState
from funcx.protocol.streams import encode_task_batch

QUERIES = (CheckCancelled, FetchContainers, FetchFunctions)
RUNNING = TaskState.RUNNING.value


def entry(*task_ids: str, fn: str = "f1", container: str = "") -> dict[str, str]:
    return encode_task_batch([Task(task_id=t, function_id=fn, payload=f"args-{t}",
                                   container_id=container) for t in task_ids])


def ok(task_id: str) -> Result:
    return Result(task_id, TaskState.SUCCESS.value, data=f"value-{task_id}")


def kinds(instructions: list) -> list[type]:
    return [type(i) for i in instructions]


def handle(state: AgentState, event) -> list:
    """``state.handle(event)``, checking the shell's contract: a query comes last."""
    out = state.handle(event)
    for ins in out[:-1]:
        assert not isinstance(ins, QUERIES), out
    return out


def take(state: AgentState, entries: list, cancelled: frozenset[str] | set[str] = frozenset(),
         codes: dict | None = None, have_nodes: bool = True) -> list:
    """Drive one read to its end, answering each query as Redis would; every
    instruction emitted on the way, in order."""
    codes = {"f1": "code-1", "f2": "code-2"} if codes is None else codes
    done: list = []
    event: Event | None = EntriesRead(entries, have_nodes=have_nodes)
    while event is not None:
        out = handle(state, event)
        done.extend(out)
        event = None
        last = out[-1] if out else None
        if isinstance(last, CheckCancelled):
            event = CancelledFlags(last.task_ids, [t in cancelled for t in last.task_ids])
        elif isinstance(last, FetchFunctions):
            event = FunctionCodes({f: codes.get(f) for f in last.function_ids})
        elif isinstance(last, FetchContainers):
            event = ContainerSpecs({c: '{"type": "docker", "location": "img"}'
                                    for c in last.container_ids})
    return done


def write(state: AgentState, items: list) -> Write:
    """Plan one write, commit it, and return the plan."""
    (w,) = handle(state, ResultsReady(items))
    assert isinstance(w, Write)
    assert handle(state, WriteCommitted(w)) == []
    return w


def started(max_inflight: int = 100, allowed=None) -> AgentState:
    """A state past its start-up walk of pending entries (none pending)."""
    s = AgentState(max_inflight, 1000, allowed)
    assert handle(s, EntriesRead([])) == []
    assert s.cursor == NEW
    return s


def only(instructions: list, kind: type):
    (found,) = [i for i in instructions if isinstance(i, kind)]
    return found


# --------------------------------------------------------------- the normal path
def test_read_dispatch_write_ack():
    s = started()
    assert s.next_read() == Read(NEW, 100, READ_BLOCK_MS)
    out = handle(s, EntriesRead([("1-0", entry("t1", "t2"))]))
    assert out == [CheckCancelled(["t1", "t2"])]
    assert s.inflight == 2 and s.open_entries == {"1-0": {"t1", "t2"}}
    out = handle(s, CancelledFlags(["t1", "t2"], [0, 0]))
    assert out == [FetchFunctions(["f1"])]
    out = handle(s, FunctionCodes({"f1": "code-1"}))
    assert kinds(out) == [Dispatch]
    tasks = out[0].tasks
    assert [t.task_id for t in tasks] == ["t1", "t2"]
    assert all(t.function_code == "code-1" for t in tasks)
    assert [t.payload for t in tasks] == ["args-t1", "args-t2"]
    w = write(s, [ok("t1"), ok("t2")])
    assert [r.task_id for r in w.results] == ["t1", "t2"]
    assert w.updates == [] and w.ack_entries == ["1-0"]
    assert s.inflight == 0 and s.open_entries == {}
    assert s.stats == {"writes": 1, "results": 2, "reads": 1, "tasks": 2, "cancelled": 0}


def test_function_code_is_fetched_once():
    s = started()
    take(s, [("1-0", entry("t1"))])
    out = take(s, [("2-0", entry("t2"))])
    assert kinds(out) == [CheckCancelled, Dispatch]
    assert out[-1].tasks[0].function_code == "code-1"


def test_many_entries_in_one_read_each_acked_with_its_own_last_result():
    s = started()
    out = take(s, [("1-0", entry("a1", "a2")), ("2-0", entry("b1", fn="f2"))])
    assert out[1] == FetchFunctions(["f1", "f2"])
    assert [t.function_code for t in out[-1].tasks] == ["code-1", "code-1", "code-2"]
    assert write(s, [ok("b1"), ok("a1")]).ack_entries == ["2-0"]
    assert write(s, [ok("a2")]).ack_entries == ["1-0"]


# ----------------------------------------------------- partial batch completion
def test_entry_acked_only_with_the_result_of_its_last_task():
    s = started()
    take(s, [("1-0", entry("t1", "t2", "t3"))])
    w = write(s, [ok("t2")])
    assert w.ack_entries == [] and s.open_entries == {"1-0": {"t1", "t3"}}
    w = write(s, [ok("t1")])
    assert w.ack_entries == [] and s.inflight == 1
    w = write(s, [ok("t3")])
    assert w.ack_entries == ["1-0"] and s.open_entries == {} and s.inflight == 0


def test_plan_before_commit_does_not_forget_the_entry():
    """Until the write is in Redis the entry stays open: a re-read skips it."""
    s = started()
    take(s, [("1-0", entry("t1"))])
    (w,) = handle(s, ResultsReady([ok("t1")]))
    assert w.ack_entries == ["1-0"]
    handle(s, Outage())
    assert handle(s, EntriesRead([("1-0", entry("t1"))])) == []  # still ours: skipped
    handle(s, WriteCommitted(w))
    assert s.open_entries == {} and s.inflight == 0


# ----------------------------------------------------------- duplicate results
def test_duplicate_results_first_stands():
    s = started()
    take(s, [("1-0", entry("t1", "t2"))])
    first, second = ok("t1"), Result("t1", TaskState.FAILED.value, data="second")
    w = write(s, [first, second])
    assert w.results == [first]
    late = write(s, [Result("t1", TaskState.SUCCESS.value, data="late")])
    assert late.results == [] and late.ack_entries == [] and not late
    assert write(s, [ok("t2")]).ack_entries == ["1-0"]


def test_result_for_a_task_never_taken_is_dropped():
    s = started()
    w = write(s, [ok("stranger")])
    assert not w and s.stats["results"] == 0


# ------------------------------------------------------- reclaim after restart
def test_restart_walks_pending_entries_first_then_reads_new():
    s = AgentState(100, 1000)
    assert s.next_read() == Read(PENDING, 100, None)  # pending walk never blocks
    out = take(s, [("1-0", entry("t1")), ("2-0", entry("t2", "t3"))])
    assert out[0] == Reclaiming(["1-0", "2-0"])
    assert kinds(out[1:]) == [CheckCancelled, FetchFunctions, Dispatch]
    assert s.cursor == "2-0" and s.next_read() == Read("2-0", 97, None)
    assert handle(s, EntriesRead([])) == []  # walk done
    assert s.next_read() == Read(NEW, 97, READ_BLOCK_MS)
    assert write(s, [ok("t2"), ok("t3"), ok("t1")]).ack_entries == ["2-0", "1-0"]


def test_after_an_outage_entries_already_open_are_skipped():
    s = started()
    take(s, [("1-0", entry("t1", "t2"))])
    handle(s, Outage())
    assert s.next_read().cursor == PENDING
    # the walk returns 1-0 (ours, in flight) and 2-0 (read before the outage, never seen)
    out = take(s, [("1-0", entry("t1", "t2")), ("2-0", entry("t3"))])
    assert out[0] == Reclaiming(["2-0"])
    assert [t.task_id for t in out[-1].tasks] == ["t3"]
    assert s.open_entries == {"1-0": {"t1", "t2"}, "2-0": {"t3"}}
    assert handle(s, EntriesRead([("1-0", entry("t1", "t2"))])) == []  # nothing new
    assert s.stats["reads"] == 2
    assert handle(s, EntriesRead([])) == [] and s.cursor == NEW


def test_entry_deleted_while_pending_is_acked():
    s = AgentState(100, 1000)
    out = handle(s, EntriesRead([("1-0", {})]))
    assert out == [Reclaiming(["1-0"]), Ack(["1-0"], [])]
    assert s.inflight == 0 and s.open_entries == {}


# ------------------------------------------------------------------ cancellation
def test_cancelled_tasks_are_skipped_and_their_entry_acked_when_empty():
    s = started()
    out = take(s, [("1-0", entry("t1", "t2")), ("2-0", entry("t3", "t4"))],
               cancelled={"t1", "t2", "t3"})
    # t3 is forgotten only with its entry's acknowledgement: an entry re-read
    # after a restart still finds it cancelled (issue 16)
    assert out[1] == Ack(["1-0"], [])
    assert out[2] == ForgetCancelled(["t1", "t2"])
    assert [t.task_id for t in out[-1].tasks] == ["t4"]
    assert s.open_entries == {"2-0": {"t4"}} and s.inflight == 1
    w = write(s, [ok("t4")])
    assert w.ack_entries == ["2-0"] and w.forget == ["t3"]


def test_all_cancelled_fetches_nothing_and_dispatches_nothing():
    s = started()
    out = take(s, [("1-0", entry("t1"))], cancelled={"t1"})
    assert out == [CheckCancelled(["t1"]), Ack(["1-0"], []), ForgetCancelled(["t1"])]
    assert s.inflight == 0 and s.stats["tasks"] == 0


def test_a_task_cancelled_in_flight_leaves_the_books_and_its_entry_is_acked():
    """Running when cancelled (issue 16): off the books at once, the entry
    acknowledged when nothing else of it runs, the interchange told to kill it,
    and its late result dropped."""
    s = started()
    take(s, [("1-0", entry("t1"))])
    assert s.in_flight() == ["t1"]
    out = handle(s, InFlightCancelled(["t1"]))
    assert out == [Ack(["1-0"], []), ForgetCancelled(["t1"]), CancelTasks(["t1"])]
    assert s.inflight == 0 and s.open_entries == {} and s.stats["cancelled"] == 1
    w = write(s, [ok("t1")])  # the killed run's result, had it raced the kill
    assert w.results == [] and w.ack_entries == []


def test_a_cancelled_task_of_a_busy_entry_is_forgotten_with_that_entry():
    """The entry still has a task running: it is not acknowledged, and the
    cancelled id stays in the set until it is (a restart re-reading the entry
    must find it cancelled); the write that acknowledges it forgets it."""
    s = started()
    take(s, [("1-0", entry("t1", "t2"))])
    out = handle(s, InFlightCancelled(["t2"]))
    assert out == [CancelTasks(["t2"])]
    assert s.open_entries == {"1-0": {"t1"}} and s.cancelled_of == {"1-0": {"t2"}}
    w = write(s, [ok("t1")])
    assert w.ack_entries == ["1-0"] and w.forget == ["t2"]
    assert s.cancelled_of == {} and s.inflight == 0


def test_a_restart_rereading_an_entry_drops_its_cancelled_task_and_tells_the_interchange():
    """After a restart the pending entry is read again: the cancelled task is
    dropped, and passed to the interchange in case a manager that outlived the
    agent still runs it; the entry's other task runs again."""
    s = AgentState(100, 1000)  # a fresh start walks its pending entries
    out = take(s, [("1-0", entry("t1", "t2"))], cancelled={"t2"})
    assert kinds(out) == [Reclaiming, CheckCancelled, CancelTasks, FetchFunctions, Dispatch]
    assert only(out, CancelTasks) == CancelTasks(["t2"])
    assert [t.task_id for t in only(out, Dispatch).tasks] == ["t1"]
    assert s.cancelled_of == {"1-0": {"t2"}}


def test_a_cancel_during_a_take_keeps_the_task_from_being_dispatched():
    s = started()
    out = handle(s, EntriesRead([("1-0", entry("t1", "t2"))]))
    assert out == [CheckCancelled(["t1", "t2"])]
    assert handle(s, InFlightCancelled(["t1"])) == [CancelTasks(["t1"])]
    out = handle(s, CancelledFlags(["t1", "t2"], [1, 0]))  # the set said so too
    assert not any(isinstance(i, Ack) for i in out)  # t2 still to run
    out += handle(s, FunctionCodes({"f1": "code-1"}))
    assert [t.task_id for t in only(out, Dispatch).tasks] == ["t2"]
    assert s.stats["cancelled"] == 1 and s.inflight == 1


def test_in_flight_cancelled_ignores_tasks_not_in_flight():
    s = started()
    take(s, [("1-0", entry("t1"))])
    write(s, [ok("t1")])
    assert handle(s, InFlightCancelled(["t1", "ghost"])) == []


# ------------------------------------------------------------- allowed functions
def test_function_not_allowed_fails_only_that_task():
    s = started(allowed=["f1"])
    out = take(s, [("1-0", entry("t1")), ("2-0", entry("t2", fn="f2"))])
    assert out[0] == CheckCancelled(["t1"])  # the refused task is not even checked
    fail = only(out, Fail)
    (r,) = fail.results
    assert r.task_id == "t2" and r.status == TaskState.FAILED.value
    assert "FunctionNotAllowed" in r.data and "allowed functions" in r.data
    assert [t.task_id for t in only(out, Dispatch).tasks] == ["t1"]
    assert s.inflight == 2  # the failure is in flight until written
    assert write(s, [r]).ack_entries == ["2-0"]
    assert write(s, [ok("t1")]).ack_entries == ["1-0"]


def test_only_refused_tasks_need_no_redis_round_trip():
    s = started(allowed=[])
    out = handle(s, EntriesRead([("1-0", entry("t1"))]))
    assert kinds(out) == [Fail]
    assert write(s, out[0].results).ack_entries == ["1-0"]


# ---------------------------------------------------------- missing function code
def test_missing_function_code_fails_with_serialization_error():
    s = started()
    out = take(s, [("1-0", entry("t1", "t2"))], codes={})
    assert kinds(out) == [CheckCancelled, FetchFunctions, Fail]
    assert [r.task_id for r in out[-1].results] == ["t1", "t2"]
    assert all("SerializationError" in r.data and "not available" in r.data
               for r in out[-1].results)
    assert s.stats["tasks"] == 0
    # not cached as missing: the next read asks again
    out = take(s, [("2-0", entry("t3"))])
    assert kinds(out) == [CheckCancelled, FetchFunctions, Dispatch]


# --------------------------------------------------------------- malformed entries
@pytest.mark.parametrize("fields", [
    {"kind": "tasks", "v": "1", "meta": "not json", "payloads": ""},
    {"kind": "tasks", "v": "99", "meta": "[]", "payloads": ""},
    {"task_id": "t9"},  # a single-task entry without its function
    {"kind": "tasks", "v": "1", "meta": '[["bad id!", "f1"]]', "payloads": "1\nx"},
])
def test_malformed_entry_is_acked_dropped_and_reported(fields):
    s = started()
    out = take(s, [("1-0", fields), ("2-0", entry("t1")), ("3-0", {})])
    ack = only(out, Ack)
    assert ack.entry_ids == ["1-0", "3-0"]
    ((bad, reason),) = ack.dropped
    assert bad == "1-0" and reason  # the reason, for the log and a dead letter
    assert [t.task_id for t in only(out, Dispatch).tasks] == ["t1"]
    assert s.open_entries == {"2-0": {"t1"}}


def test_only_malformed_entries_are_acked_at_once():
    s = started()
    out = handle(s, EntriesRead([("1-0", {"kind": "tasks", "v": "1"})]))
    assert kinds(out) == [Ack] and out[0].entry_ids == ["1-0"]


# ------------------------------------------------------------------ lost manager
def test_lost_manager_retried_tasks_stay_in_flight_failed_ones_are_written():
    """The interchange re-dispatches a lost manager's tasks with retries left
    (nothing reaches the agent) and reports the rest as ManagerLost failures."""
    s = started()
    (dispatch,) = [i for i in take(s, [("1-0", entry("t1", "t2", "t3"))])
                   if isinstance(i, Dispatch)]
    _, t2, _ = dispatch.tasks
    t2.attempt = 2
    lost = failure(t2, ManagerLost("m-1", t2.attempt))
    w = write(s, [StatusUpdate(RUNNING, ["t1", "t2", "t3"]), lost])
    assert w.results == [lost] and w.ack_entries == []
    assert w.updates == [StatusUpdate(RUNNING, ["t1", "t3"])]
    assert "ManagerLost" in lost.data
    # t1 and t3 were retried on another manager: running again, then done
    w = write(s, [StatusUpdate(RUNNING, ["t1", "t3"]), ok("t1"), ok("t3")])
    assert w.updates == [] and w.ack_entries == ["1-0"]
    # the lost manager's late result for t2 comes back: the failure stands
    assert not write(s, [ok("t2")])


# ------------------------------------------------------------------ back-pressure
def test_back_pressure_at_max_inflight():
    s = started(max_inflight=3)
    assert s.next_read().count == 3
    take(s, [("1-0", entry("t1", "t2"))])
    assert s.next_read().count == 1
    take(s, [("2-0", entry("t3"))])
    assert s.next_read() is None  # the reader waits for room
    write(s, [ok("t1")])
    assert s.next_read().count == 1
    write(s, [ok("t2"), ok("t3")])
    assert s.next_read().count == 3


def test_read_count_bounds_a_read_and_an_oversized_entry_still_fits():
    s = AgentState(max_inflight=4000, read_count=1000)
    assert s.next_read().count == 1000
    handle(s, EntriesRead([]))
    take(s, [("1-0", entry(*[f"t{i}" for i in range(3999)]))])
    assert s.next_read().count == 1
    take(s, [("2-0", entry("x1", "x2"))])  # one entry may overshoot: it is never split
    assert s.inflight == 4001 and s.next_read() is None


# ----------------------------------------------------------------- status updates
def test_status_update_for_a_task_whose_result_is_in_the_batch_is_dropped():
    s = started()
    take(s, [("1-0", entry("t1", "t2", "t3"))])
    w = write(s, [StatusUpdate(RUNNING, ["t1", "t2"]), StatusUpdate(RUNNING, ["t3"]),
                  ok("t1")])
    assert w.updates == [StatusUpdate(RUNNING, ["t2", "t3"])]  # merged, t1 gone
    w = write(s, [StatusUpdate(RUNNING, ["t2"]), ok("t2"), ok("t3")])
    assert w.updates == [] and w.ack_entries == ["1-0"]


def test_status_only_write_acks_nothing():
    s = started()
    take(s, [("1-0", entry("t1"))])
    w = write(s, [StatusUpdate(RUNNING, ["t1"])])
    assert w and w.results == [] and w.ack_entries == []
    assert s.inflight == 1


def test_waiting_for_nodes_when_no_manager():
    s = started()
    out = take(s, [("1-0", entry("t1", "t2"))], have_nodes=False)
    assert kinds(out)[-2:] == [Report, Dispatch]
    assert out[-2].updates == [StatusUpdate(TaskState.WAITING_FOR_NODES.value, ["t1", "t2"])]
    assert Report not in kinds(take(s, [("2-0", entry("t3"))], have_nodes=True))


# --------------------------------------------------------------------- containers
def test_container_spec_fetched_once_and_attached():
    s = started()
    out = take(s, [("1-0", entry("t1", container="c1")), ("2-0", entry("t2"))])
    assert kinds(out) == [CheckCancelled, FetchContainers, FetchFunctions, Dispatch]
    assert out[1] == FetchContainers(["c1"])
    t1, t2 = out[-1].tasks
    assert t1.container_spec == {"type": "docker", "location": "img"}
    assert t2.container_spec == {}
    out = take(s, [("3-0", entry("t3", container="c1"))])
    assert kinds(out) == [CheckCancelled, Dispatch]


def test_unknown_or_bad_container_spec_runs_without_one():
    s = started()
    handle(s, EntriesRead([("1-0", entry("t1", container="c1")),
                           ("2-0", entry("t2", container="c2"))]))
    out = handle(s, CancelledFlags(["t1", "t2"], [0, 0]))
    assert out == [FetchContainers(["c1", "c2"])]
    out = handle(s, ContainerSpecs({"c1": None, "c2": "{not json"}))
    assert out == [FetchFunctions(["f1"])]
    out = handle(s, FunctionCodes({"f1": "code-1"}))
    assert [t.container_spec for t in out[-1].tasks] == [{}, {}]


# ------------------------------------------------------------------- misuse
def test_answers_out_of_turn_are_refused():
    s = started()
    with pytest.raises(RuntimeError):
        s.handle(FunctionCodes({"f1": "x"}))
    handle(s, EntriesRead([("1-0", entry("t1"))]))
    with pytest.raises(RuntimeError):
        s.handle(EntriesRead([("2-0", entry("t2"))]))


def test_a_read_with_the_cancelled_set_empty_asks_nothing_about_cancellation():
    """issue 20: the agent reads with SCARD of the cancelled set in the same
    round trip; an empty set means none of the tasks read is cancelled, so
    the take goes straight on (here: to the function code, then dispatch)."""
    s = started()
    out = handle(s, EntriesRead([("1-0", entry("t1", "t2"))], none_cancelled=True))
    assert out == [FetchFunctions(["f1"])]
    out = handle(s, FunctionCodes({"f1": "code-1"}))
    assert kinds(out) == [Dispatch]
    assert [t.task_id for t in out[0].tasks] == ["t1", "t2"]
    out = handle(s, EntriesRead([("2-0", entry("t3"))], none_cancelled=True))
    assert kinds(out) == [Dispatch]  # code cached: one event, one instruction
    # without the flag, it asks as before
    assert handle(s, EntriesRead([("3-0", entry("t4"))])) == [CheckCancelled(["t4"])]
