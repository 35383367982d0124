"""Unit tests of funcx/protocol/: task states and the typed messages."""
from __future__ import annotations

import json

import pytest

from funcx.protocol import messages as m
from funcx.protocol.messages import (
    Kind,
    ProtocolError,
    Result,
    StatusUpdate,
    Task,
    pack,
    pack_results,
    pack_tasks,
    parse_result_entry,
    unpack,
    unpack_results,
    unpack_tasks,
)
from funcx.protocol.states import TERMINAL, TaskState, is_terminal, may_transition

NON_TERMINAL = [s for s in TaskState if s not in TERMINAL]
FORWARD = ["received", "waiting-for-ep", "waiting-for-nodes", "waiting-for-launch", "running"]


# ------------------------------------------------------------------ states
def test_terminal_set():
    assert {s.value for s in TERMINAL} == {"success", "failed", "cancelled"}
    assert is_terminal("success") and is_terminal("failed") and is_terminal("cancelled")
    assert not is_terminal("running")
    assert [s.value for s in NON_TERMINAL] == FORWARD


def test_state_str_is_wire_value():
    assert str(TaskState.WAITING_FOR_EP) == "waiting-for-ep"
    assert f"{TaskState.SUCCESS}" == "success"


@pytest.mark.parametrize("current", sorted(s.value for s in TERMINAL))
@pytest.mark.parametrize("new", [s.value for s in TaskState])
def test_terminal_states_never_change(current, new):
    assert may_transition(current, new) is False


@pytest.mark.parametrize("current", FORWARD)
@pytest.mark.parametrize("new", sorted(s.value for s in TERMINAL))
def test_any_non_terminal_may_become_terminal(current, new):
    assert may_transition(current, new) is True


@pytest.mark.parametrize("i", range(len(FORWARD)))
@pytest.mark.parametrize("j", range(len(FORWARD)))
def test_non_terminal_only_moves_forward(i, j):
    assert may_transition(FORWARD[i], FORWARD[j]) is (j > i)


@pytest.mark.parametrize("new", [s.value for s in TaskState])
def test_no_current_state_allows_anything(new):
    assert may_transition(None, new) is True


def test_may_transition_accepts_enum_members():
    assert may_transition(TaskState.RUNNING, TaskState.SUCCESS) is True
    assert may_transition(TaskState.RUNNING, TaskState.RECEIVED) is False


# ------------------------------------------------------- stream field maps
def _task(**kw) -> Task:
    base = dict(task_id="t1", function_id="f1", payload="5\nab:c\n", task_group_id="g1",
                container_id="c1", resource_specification={"walltime": 3, "num_nodes": 2})
    base.update(kw)
    return Task(**base)


def test_task_fields_round_trip():
    t = _task()
    fields = t.to_fields()
    assert all(isinstance(v, str) for v in fields.values())
    assert json.loads(fields["resource_specification"]) == {"walltime": 3, "num_nodes": 2}
    back = Task.from_fields(fields)
    assert back == t


def test_task_fields_minimal():
    t = Task.from_fields({"task_id": "t", "function_id": "f", "payload": "p"})
    assert (t.task_group_id, t.container_id, t.resource_specification, t.attempt) == ("", "", {}, 0)
    assert "resource_specification" not in Task("t", "f", "p").to_fields()


@pytest.mark.parametrize("missing", ["task_id", "function_id", "payload"])
def test_task_missing_key(missing):
    fields = _task().to_fields()
    del fields[missing]
    with pytest.raises(ProtocolError):
        Task.from_fields(fields)


def test_task_bad_json():
    fields = _task().to_fields()
    fields["resource_specification"] = "{not json"
    with pytest.raises(ProtocolError):
        Task.from_fields(fields)


def test_result_fields_round_trip():
    r = Result("t1", "failed", data="Traceback...\nValueError: x", exc_data="00\nabc\n",
               task_group_id="g", completion_t="1700000000.5", details={"attempt": 2})
    fields = r.to_fields()
    assert fields["kind"] == "result"
    assert all(isinstance(v, str) for v in fields.values())
    assert Result.from_fields(fields) == r
    assert parse_result_entry(fields) == r


def test_result_optional_fields_omitted_and_completion_time_set():
    r = Result("t1", "success", data="00\nx\n")
    fields = r.to_fields()
    assert "exc_data" not in fields and "details" not in fields
    assert float(fields["completion_t"]) > 0
    back = Result.from_fields(fields)
    assert back.completion_t == r.completion_t
    assert back.exc_data == "" and back.details == {}


@pytest.mark.parametrize("missing", ["task_id", "status"])
def test_result_missing_key(missing):
    fields = Result("t1", "success").to_fields()
    del fields[missing]
    with pytest.raises(ProtocolError):
        Result.from_fields(fields)


def test_result_bad_details_json():
    fields = Result("t1", "success").to_fields()
    fields["details"] = "[1,"
    with pytest.raises(ProtocolError):
        Result.from_fields(fields)


def test_status_update_round_trip():
    s = StatusUpdate("running", ["a", "b"])
    fields = s.to_fields()
    assert fields["kind"] == "status"
    assert StatusUpdate.from_fields(fields) == s
    assert parse_result_entry(fields) == s


@pytest.mark.parametrize("fields", [
    {"kind": "status", "task_ids": "[]"},
    {"kind": "status", "status": "running"},
    {"kind": "status", "status": "running", "task_ids": "[oops"},
])
def test_status_update_bad(fields):
    with pytest.raises(ProtocolError):
        StatusUpdate.from_fields(fields)


def test_parse_unknown_kind():
    with pytest.raises(ProtocolError, match="kind"):
        parse_result_entry({"kind": "bogus", "task_id": "t", "status": "success"})


def test_parse_defaults_to_result():
    r = parse_result_entry({"task_id": "t", "status": "success", "data": "d"})
    assert isinstance(r, Result) and r.data == "d"


# ------------------------------------------------------------- ZMQ frames
def test_pack_unpack_round_trip():
    frames = pack(Kind.READY, {"pid": 3}, [b"\x00\xff", b""])
    assert frames[0] == bytes([m.VERSION]) + b"READY"
    msg = unpack(frames)
    assert msg.kind == Kind.READY
    assert msg.header == {"pid": 3}
    assert msg.blobs == [b"\x00\xff", b""]


def test_unknown_kind_is_refused():
    with pytest.raises(ProtocolError, match="unknown message kind"):
        unpack(pack(b"CAPACITY", {"n": 3}))


def test_pack_default_header_is_null():
    msg = unpack(pack(Kind.HEARTBEAT))
    assert msg.kind == Kind.HEARTBEAT and msg.header is None and msg.blobs == []


def test_unpack_version_mismatch():
    frames = pack(Kind.TASKS, [])
    frames[0] = bytes([m.VERSION + 1]) + frames[0][1:]
    with pytest.raises(ProtocolError, match="version"):
        unpack(frames)


@pytest.mark.parametrize("frames", [
    [],
    [bytes([1]) + b"TASKS"],
    [b"", b"null"],
])
def test_unpack_short(frames):
    with pytest.raises(ProtocolError):
        unpack(frames)


@pytest.mark.parametrize("header", [b"[1,", b"\xff\xfe\x00", b"\x80", b'"\xff"'])
def test_unpack_bad_header(header):
    with pytest.raises(ProtocolError):
        unpack([bytes([m.VERSION]) + Kind.TASKS, header])


BINARY_PAYLOADS = ["", "3\nabc", "\x00\x01\n\r\n\xff", "日本語 🙂\n" * 50, "x" * 100_000]


def test_tasks_round_trip_binary_safe():
    tasks = [
        Task(task_id=f"t{i}", function_id="f", payload=p, task_group_id="g",
             function_code=f"{len(p)}\n{p}", container_id="c" if i % 2 else "",
             resource_specification={"walltime": i} if i else {}, attempt=i)
        for i, p in enumerate(BINARY_PAYLOADS)
    ]
    frames = pack_tasks(tasks)
    assert len(frames) == 2 + 2 * len(tasks)
    msg = unpack(frames)
    assert msg.kind == Kind.TASKS
    assert unpack_tasks(msg) == tasks


def test_results_round_trip_binary_safe():
    results = [
        Result(f"t{i}", "success" if i % 2 else "failed", data=p, exc_data=p[::-1],
               task_group_id="g", details={"i": i})
        for i, p in enumerate(BINARY_PAYLOADS)
    ]
    msg = unpack(pack_results(results))
    assert msg.kind == Kind.RESULTS
    assert unpack_results(msg) == results


def test_empty_batches():
    assert unpack_tasks(unpack(pack_tasks([]))) == []
    assert unpack_results(unpack(pack_results([]))) == []


@pytest.mark.parametrize("drop", [1, 2])
def test_task_batch_frame_count_mismatch(drop):
    frames = pack_tasks([_task(function_code="1\nx"), _task(task_id="t2")])
    with pytest.raises(ProtocolError, match="mismatch"):
        unpack_tasks(unpack(frames[:-drop]))


def test_task_batch_extra_frame():
    frames = pack_tasks([_task()]) + [b"extra"]
    with pytest.raises(ProtocolError, match="mismatch"):
        unpack_tasks(unpack(frames))


def test_result_batch_frame_count_mismatch():
    frames = pack_results([Result("a", "success"), Result("b", "success")])
    with pytest.raises(ProtocolError, match="mismatch"):
        unpack_results(unpack(frames[:-1]))
