"""Retries on the endpoint, as pure decisions (endpoint/retries.py) and through
the interchange's state machine (no ZeroMQ): which failures run again, on
which budget, and what the final result records of each attempt."""
from __future__ import annotations

import pytest

from endpoint import retries
from endpoint.execute import failure
from endpoint.interchange_state import (
    InterchangeState,
    ManagerRegistered,
    Output,
    ResultsFrom,
    SendTasks,
    Tick,
)
from funcx.errors import SerializationError, WorkerLost
from funcx.protocol.messages import Register, Result, Task
from funcx.protocol.retry import (
    MAX_ATTEMPTS_RECORDED,
    RetryPolicyError,
    build_policy,
    error_types,
    matches,
    retry_policy,
)


class Flaky(OSError):
    pass


def task(tid: str = "t1", policy: dict | None = None) -> Task:
    return Task(task_id=tid, function_id="f", payload="p", task_group_id="g",
                retry_policy=policy or {})


def failed(t: Task, exc: BaseException) -> Result:
    return failure(t, exc)


def ok(t: Task) -> Result:
    return Result(t.task_id, "success", data="v", details={"exec_start": 1.0, "exec_end": 2.0})


# ------------------------------------------------------------------ policies
def test_error_types_name_the_class_and_its_bases_qualified_unless_builtin():
    names = error_types(Flaky("x"))
    assert names[0] == f"{__name__}.Flaky"
    assert names[1:4] == ["OSError", "Exception", "BaseException"]


def test_matches_by_qualified_or_short_name_and_by_base():
    types = error_types(Flaky("x"))
    assert matches(["OSError"], types)
    assert matches(["Flaky"], types) and matches([f"{__name__}.Flaky"], types)
    assert not matches(["ValueError"], types)
    assert not matches(["laky"], types)  # a part of a name is no name


def test_build_policy_from_classes_and_names_and_refusals():
    assert build_policy(0, None) == {}
    assert build_policy(2, (OSError, "mypkg.Bad")) == {"retries": 2,
                                                      "retry_on": ["OSError", "mypkg.Bad"]}
    assert build_policy(1, ValueError) == {"retries": 1, "retry_on": ["ValueError"]}
    with pytest.raises(ValueError, match="retries must be"):
        build_policy(-1, None)
    with pytest.raises(ValueError, match="retries must be"):
        build_policy(101, None)
    with pytest.raises(ValueError, match="retry_on needs retries"):
        build_policy(0, OSError)
    with pytest.raises(TypeError, match="exception classes"):
        build_policy(1, [int])
    with pytest.raises(ValueError, match="retry_on"):
        build_policy(1, ["not a name!"])


@pytest.mark.parametrize("raw", [
    {"retries": "2"}, {"retries": 1000}, {"retries": 1, "retry_on": ["x"] * 33},
    {"retries": 1, "retry_on": ["a b"]}, {"retries": 1, "surprise": 1}, ["retries"]])
def test_retry_policy_refuses_what_is_out_of_bounds(raw):
    with pytest.raises(RetryPolicyError):
        retry_policy(raw)


# ------------------------------------------------------------------ decisions
def test_policy_retries_matching_failures_until_the_budget_is_spent():
    t = task(policy={"retries": 2, "retry_on": ["OSError"]})
    assert retries.decide(t, failed(t, Flaky("1")), max_system_retries=0) == "policy"
    t.retried = 2
    assert retries.decide(t, failed(t, Flaky("3")), max_system_retries=0) is None


def test_policy_leaves_other_exceptions_alone():
    t = task(policy={"retries": 2, "retry_on": ["OSError"]})
    assert retries.decide(t, failed(t, ValueError("no")), 5) is None


def test_policy_without_retry_on_retries_any_exception_but_deterministic_ones():
    t = task(policy={"retries": 1})
    assert retries.decide(t, failed(t, ValueError("no")), 0) == "policy"
    assert retries.decide(t, failed(t, SerializationError("bad args")), 0) is None
    assert retries.decide(t, ok(t), 0) is None


def test_no_policy_no_retry():
    t = task()
    assert retries.decide(t, failed(t, OSError("x")), 3) is None


def test_system_failures_use_the_endpoint_budget_not_the_policy():
    t = task(policy={"retries": 5, "retry_on": ["OSError"]})
    lost = failed(t, WorkerLost("w1", "exit signal 9"))
    assert retries.decide(t, lost, max_system_retries=1) == "system"
    t.attempt = 1
    assert retries.decide(t, lost, max_system_retries=1) is None
    assert retries.decide(task(), lost, max_system_retries=0) is None


def test_an_older_workers_failure_is_matched_by_its_traceback_text():
    t = task(policy={"retries": 1, "retry_on": ["OSError"]})
    r = Result("t1", "failed", data="Traceback (most recent call last):\nOSError: gone\n")
    assert retries.failure_types(r) == ["OSError"]
    assert retries.decide(t, r, 0) == "policy"
    assert retries.failure_types(Result("t1", "failed", data="garbage here")) == []


def test_reported_types_are_bounded_and_checked():
    r = Result("t1", "failed", data="X: y",
               details={"error_types": [1, "A" * 300, "OSError"] + ["E"] * 100})
    assert retries.failure_types(r)[0] == "OSError" and len(retries.failure_types(r)) <= 32


def test_attempts_are_numbered_recorded_and_bounded():
    t = task(policy={"retries": 100})
    for i in range(MAX_ATTEMPTS_RECORDED + 5):
        retries.note_retry(t, failed(t, OSError(f"try {i}")), "policy", "m1")
    r = ok(t)
    retries.finish(t, r, "m2")
    attempts = r.details["attempts"]
    assert len(attempts) == MAX_ATTEMPTS_RECORDED
    assert attempts[-1] == {"n": MAX_ATTEMPTS_RECORDED + 6, "manager": "m2", "status": "success",
                            "start": 1.0, "end": 2.0}
    assert attempts[-2]["error_type"] == "OSError"
    assert attempts[-2]["message"] == f"OSError: try {MAX_ATTEMPTS_RECORDED + 4}"


# ------------------------------------------------ through the state machine
def machine(max_retries: int = 1) -> InterchangeState:
    s = InterchangeState(1.0, 5.0, max_retries, 0.0)
    for mid in (b"m1", b"m2"):
        s.handle(ManagerRegistered(mid, Register(manager_id=mid.decode(), workers=1,
                                                 capacity=1), 0.0))
    return s


def sends(out: list) -> dict[bytes, list[str]]:
    return {i.mid: [t.task_id for t in i.tasks] for i in out if isinstance(i, SendTasks)}


def results(out: list) -> list[Result]:
    return [x for i in out if isinstance(i, Output) for x in i.items if isinstance(x, Result)]


def test_a_failed_task_is_queued_again_and_only_its_last_result_goes_out():
    from endpoint.interchange_state import TasksQueued

    s = machine()
    t = task(policy={"retries": 2, "retry_on": ["OSError"]})
    s.handle(TasksQueued([t]))
    first = sends(s.handle(Tick(0.1)))
    [(mid, [tid])] = first.items()
    out = s.handle(ResultsFrom(mid, [failed(t, Flaky("1"))], 0.2))
    assert results(out) == [] and s.stats["retried"] == 1
    second = sends(s.handle(Tick(0.3)))
    assert list(second.values()) == [["t1"]]  # sent again (any manager with a credit)
    mid2 = next(iter(second))
    out = s.handle(ResultsFrom(mid2, [failed(t, Flaky("2"))], 0.4))
    assert results(out) == []
    mid3 = next(iter(sends(s.handle(Tick(0.5)))))
    out = s.handle(ResultsFrom(mid3, [ok(t)], 0.6))
    [final] = results(out)
    assert final.status == "success" and final.task_group_id == "g"
    assert [a["n"] for a in final.details["attempts"]] == [1, 2, 3]
    assert [a["status"] for a in final.details["attempts"]] == ["failed", "failed", "success"]
    assert final.details["attempts"][0]["manager"] == mid.decode()
    assert s.outstanding() == 0
    # a second result for it (a duplicate) is refused, not retried
    assert results(s.handle(ResultsFrom(mid3, [failed(t, Flaky("late"))], 0.7))) == []


def test_exhausted_retries_pass_the_last_error_on_with_every_attempt():
    from endpoint.interchange_state import TasksQueued

    s = machine()
    t = task(policy={"retries": 1})
    s.handle(TasksQueued([t]))
    mid = next(iter(sends(s.handle(Tick(0.1)))))
    s.handle(ResultsFrom(mid, [failed(t, ValueError("first"))], 0.2))
    mid = next(iter(sends(s.handle(Tick(0.3)))))
    [final] = results(s.handle(ResultsFrom(mid, [failed(t, ValueError("second"))], 0.4)))
    assert final.status == "failed" and "ValueError: second" in final.data
    assert [a["message"] for a in final.details["attempts"]] == ["ValueError: first",
                                                                "ValueError: second"]


def test_worker_lost_is_retried_on_the_endpoint_budget():
    from endpoint.interchange_state import TasksQueued

    s = machine(max_retries=1)
    t, other = task("t1"), task("t2")
    s.handle(TasksQueued([t, other]))
    placed = sends(s.handle(Tick(0.1)))
    where = {tid: mid for mid, tids in placed.items() for tid in tids}
    out = s.handle(ResultsFrom(where["t1"], [failed(t, WorkerLost("w", "exit signal 9"))], 0.2))
    assert results(out) == []
    # the other tenant's task finishes untouched, once
    [r2] = results(s.handle(ResultsFrom(where["t2"], [ok(other)], 0.25)))
    assert r2.task_id == "t2" and "attempts" not in r2.details
    mid = next(iter(sends(s.handle(Tick(0.3)))))
    [final] = results(s.handle(ResultsFrom(mid, [failed(t, WorkerLost("w2", "again"))], 0.4)))
    assert final.status == "failed"
    assert [a["error_type"] for a in final.details["attempts"]] == ["WorkerLost", "WorkerLost"]


def test_a_lost_managers_tasks_record_the_loss_and_a_comeback_refunds_it():
    from endpoint.interchange_state import TasksQueued

    s = InterchangeState(1.0, 5.0, 1, 0.0)
    s.handle(ManagerRegistered(b"m1", Register(manager_id="m1", workers=1, capacity=1), 0.0))
    t = task(policy={"retries": 1})
    s.handle(TasksQueued([t]))
    s.handle(Tick(0.1))
    s.handle(Tick(10.0))  # m1 silent past the threshold: lost, t re-queued
    assert t.attempt == 1 and t.attempts[-1]["error_type"] == "ManagerLost"
    assert t.attempts[-1]["end"] == 10.0
    s.handle(ManagerRegistered(b"m1", Register(manager_id="m1", workers=1, capacity=1,
                                               held=["t1"]), 10.5))
    assert t.attempt == 0 and t.attempts == []  # it ran on: no retry spent, none recorded


# ------------------------------------------------------------ the endpoint option
def test_max_retries_on_system_failure_is_task_retries_on_manager_lost_by_another_name():
    from endpoint.config import Config

    assert Config(max_retries_on_system_failure=3).task_retries_on_manager_lost == 3
    assert Config(task_retries_on_manager_lost=2).max_retries_on_system_failure == 2
    assert Config(max_retries_on_system_failure=0).task_retries_on_manager_lost == 0
    with pytest.raises(ValueError, match="one option"):
        Config(task_retries_on_manager_lost=2, max_retries_on_system_failure=3)
    with pytest.raises(ValueError, match="whole number"):
        Config(max_retries_on_system_failure=-1)
    with pytest.raises(ValueError, match="whole number"):
        Config(max_retries_on_system_failure=True)
