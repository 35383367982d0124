"""The CLI's pure decisions, without a service: values as JSON values
(numpy, datetimes, Decimals, sets, bytes), how text becomes arguments (run
arguments, map lines), short task ids and prefixes, and the task list / watch
read-outs (durations, counts per state, failures grouped by error)."""
from __future__ import annotations

import array
import datetime
import decimal
import json
import math

import pytest

from funcx_cli.arguments import BadArgument, parse_call, parse_kwargs, parse_lines, parse_value
from funcx_cli.errors import EXIT_CODES, NOT_FOUND, USAGE
from funcx_cli.ids import IdError, match_prefix
from funcx_cli.jsonvalues import to_json_value
from funcx_cli.listing import Names, display_row, duration, summarize, unique_prefix_length

np = pytest.importorskip("numpy")


# ----------------------------------------------------------- JSON values
def test_numpy_arrays_and_scalars_are_json_values():
    value = {"mean": np.float64(2.5), "n": np.int64(7), "ok": np.bool_(True),
             "grid": np.arange(6, dtype=np.int32).reshape(2, 3),
             "big": np.zeros(5000)}  # a repr would be cut with "..."
    out = json.loads(json.dumps(to_json_value(value), allow_nan=False))
    assert out["mean"] == 2.5 and out["n"] == 7 and out["ok"] is True
    assert out["grid"] == [[0, 1, 2], [3, 4, 5]]
    assert out["big"] == [0.0] * 5000
    assert type(out["n"]) is int


def test_other_values_are_json_values():
    when = datetime.datetime(2026, 1, 2, 3, 4, 5)
    value = [when, when.date(), decimal.Decimal("1.25"), decimal.Decimal("3"), {3, 1, 2},
             frozenset({"b", "a"}), b"text", b"\xff\x00", (1, 2), complex(1, -2),
             float("nan"), float("inf"), -float("inf"), array.array("i", [1, 2]),
             datetime.timedelta(seconds=90), {1: "int key", None: "none key"}]
    out = json.loads(json.dumps(to_json_value(value), allow_nan=False))
    assert out == ["2026-01-02T03:04:05", "2026-01-02", 1.25, 3, [1, 2, 3], ["a", "b"], "text",
                   {"base64": "/wA="}, [1, 2], {"real": 1.0, "imag": -2.0}, "NaN", "Infinity",
                   "-Infinity", [1, 2], 90.0, {"1": "int key", "None": "none key"}]
    assert math.isnan(np.float64("nan")) and to_json_value(np.array([np.nan])) == ["NaN"]


def test_an_unknown_object_is_its_whole_repr():
    class Thing:
        def __repr__(self) -> str:
            return "Thing(" + "x" * 500 + ")"

    assert to_json_value(Thing()) == "Thing(" + "x" * 500 + ")"  # never cut


# ------------------------------------------------------------- arguments
def test_run_arguments_json_where_they_parse_else_strings():
    assert [parse_value(t) for t in ("3", "2.5", "true", "null", "hello", "[1, 2]", '"q"',
                                     '{"a": 1}', "hello world")] == \
        [3, 2.5, True, None, "hello", [1, 2], "q", {"a": 1}, "hello world"]


@pytest.mark.parametrize("text", ["[1, 2", "{not json", '"unterminated', " [1,]"])
def test_text_that_starts_like_json_must_be_json(text):
    with pytest.raises(BadArgument, match="not valid JSON"):
        parse_value(text)


def test_kwargs_must_be_a_json_object():
    assert parse_kwargs(None) == {} and parse_kwargs('{"a": 1}') == {"a": 1}
    with pytest.raises(BadArgument, match="JSON object"):
        parse_kwargs("[1]")
    with pytest.raises(BadArgument, match="not valid JSON"):
        parse_kwargs("{oops")


def test_map_lines_args_kwargs_or_bare_arguments():
    assert parse_call({"args": [1, 2], "kwargs": {"k": 3}}) == ([1, 2], {"k": 3})
    assert parse_call({"kwargs": {"k": 3}}) == ([], {"k": 3})
    assert parse_call({"args": [1]}) == ([1], {})
    assert parse_call([1, 2]) == ([1, 2], {})
    assert parse_call(5) == ([5], {})
    assert parse_call({"a": 1}) == ([{"a": 1}], {})  # any other object: one argument
    assert parse_call({"args": [1], "x": 2}) == ([{"args": [1], "x": 2}], {})
    assert parse_call([{"args": [1]}]) == ([{"args": [1]}], {})  # wrapped: a dict argument
    assert parse_call({}) == ([{}], {})
    with pytest.raises(BadArgument, match='"args" must be a JSON list'):
        parse_call({"args": 3})
    with pytest.raises(BadArgument, match='"kwargs" must be a JSON object'):
        parse_call({"kwargs": [1]})


def test_map_input_names_the_bad_line():
    assert parse_lines(['[1]', '', '{"args": [2], "kwargs": {"k": 1}}'], "in.jsonl") == \
        [([1], {}), ([2], {"k": 1})]
    with pytest.raises(BadArgument, match="in.jsonl:2: not JSON"):
        parse_lines(["[1]", "nope"], "in.jsonl")
    with pytest.raises(BadArgument, match='in.jsonl:1: "args" must be'):
        parse_lines(['{"args": {}}'], "in.jsonl")


# ----------------------------------------------------------------- ids
IDS = ["0b7e1f2a-0000-4000-8000-000000000001", "0b7e9999-0000-4000-8000-000000000002",
       "5c1d0000-0000-4000-8000-000000000003"]


def test_prefixes_name_one_task():
    assert match_prefix("5c1d", IDS) == IDS[2]
    assert match_prefix("0B7E1F", IDS) == IDS[0]
    with pytest.raises(IdError) as e:
        match_prefix("0b7e", IDS)
    assert e.value.code == USAGE and "ambiguous: 2 tasks" in str(e.value)
    with pytest.raises(IdError) as e:
        match_prefix("ffff", IDS)
    assert e.value.code == NOT_FOUND
    with pytest.raises(IdError) as e:
        match_prefix("0b7", IDS)  # too short
    assert e.value.code == USAGE
    with pytest.raises(IdError):
        match_prefix("zzzzzz", IDS)


def test_short_ids_grow_until_unique():
    assert unique_prefix_length(IDS[1:]) == 8
    assert unique_prefix_length(IDS) == 8
    assert unique_prefix_length(["abcdefgh1", "abcdefgh2"]) == 9


# -------------------------------------------------------------- listing
def test_durations():
    assert [duration(s) for s in (None, 0.42, 42, 187, 3725, 3 * 86400 + 7200)] == \
        ["-", "0.4s", "42s", "3m07s", "1h02m", "3d02h"]


def test_a_list_row_reads_like_sacct():
    names = Names(functions={"f" * 36: "fit"}, endpoints={"e" * 36: "laptop"})
    row = {"task_id": IDS[0], "status": "failed", "function_id": "f" * 36,
           "endpoint_id": "e" * 36, "created_at": "1000.0", "exec_start": 1002.5,
           "exec_end": 1010.0, "completion_t": "1010.1", "error_type": "ValueError"}
    shown = display_row(row, names, now=2000.0)
    assert shown["id"] == "0b7e1f2a" and shown["function"] == "fit"
    assert shown["endpoint"] == "laptop" and shown["queued"] == "2.5s" and shown["run"] == "7.5s"
    assert shown["error"] == "ValueError"
    waiting = {"task_id": IDS[1], "status": "waiting-for-ep", "function_id": "a" * 36,
               "endpoint_id": None, "created_at": "1900"}
    shown = display_row(waiting, names, now=2000.0)
    assert shown["queued"] == "1m40s" and shown["run"] == "-" and shown["function"] == "aaaaaaaa"


def test_watch_summary_counts_states_and_groups_failures():
    rows = [{"task_id": f"t{i}", "status": "success"} for i in range(5)] + \
           [{"task_id": f"f{i}", "status": "failed", "error": "ValueError: too noisy"}
            for i in range(3)] + \
           [{"task_id": "g", "status": "failed", "error": "KeyError: 'x'"},
            {"task_id": "r", "status": "running"}]
    s = summarize(rows)
    assert s.total == 10 and s.done == 9 and s.failed == 4
    assert s.headline() == "9/10 done: 1 running, 5 success, 4 failed"
    assert s.failures == [("ValueError: too noisy", 3, "f0"), ("KeyError: 'x'", 1, "g")]


def test_exit_codes_are_distinct_and_documented():
    assert len(set(EXIT_CODES)) == len(EXIT_CODES) == 9
    assert all(EXIT_CODES[c] for c in EXIT_CODES)


# ------------------------------------------------------ results in order
class _FakeGroup:
    """A task group whose tasks finish in a scripted order, one event answer
    per long-poll (the client surface ``follow_in_order`` uses)."""

    def __init__(self, order: list[list[str]]):
        self.order, self.finished = list(order), set()
        self.web_client = self

    def get(self, path, params, **kw):
        if params["after"] == "$":
            return {"last_id": "0"}
        batch = self.order.pop(0) if self.order else []
        self.finished.update(batch)
        return {"last_id": str(len(self.finished)), "tasks": [{"task_id": t} for t in batch]}

    def get_batch_result(self, ids):
        return {t: {"pending": t not in self.finished, "status": "success", "result": t}
                for t in ids}


def test_results_come_in_input_order_with_progress_between():
    from funcx_cli.submit import follow_in_order

    fake = _FakeGroup([["c"], ["b", "d"], ["a"]])
    seen = list(follow_in_order(fake, "g", ["a", "b", "c", "d"], timeout=None))
    rows = [(i, st.get("result"), n) for i, st, n in seen]
    assert [r for r in rows if r[0] >= 0] == [(0, "a", 4), (1, "b", 4), (2, "c", 4), (3, "d", 4)]
    assert [n for i, _, n in rows if i < 0] == [0, 1, 3]  # the bar moves before "a" is done


def test_following_gives_up_after_the_timeout():
    from funcx.errors import TaskPending
    from funcx_cli.submit import follow_in_order

    fake = _FakeGroup([])  # nothing ever finishes
    with pytest.raises(TaskPending):
        list(follow_in_order(fake, "g", ["a"], timeout=0.05))
