"""Serializer choice (issue 18 item 6), as Globus Compute has it: results as
JSON (``result_serializers``), an endpoint's ``allowed_serializers``, code
strategies that fall back in order (``AllCodeStrategies``), and
``register_source_code``.

The pure decisions (funcx.serialize.choice) are tested directly; the rest
against the session's real service and endpoint processes, plus one endpoint
of this module's own with ``allowed_serializers`` set.
"""
from __future__ import annotations

import json
import uuid

import pytest

from funcx.errors import (
    BadRequest,
    ResultSerializationFailed,
    SerializationError,
    SerializerNotAllowed,
)
from funcx.protocol import error_codes
from funcx.serialize import (
    AllCodeStrategies,
    AllDataStrategies,
    ComputeSerializer,
    DillCode,
    DillCodeSource,
    DillCodeTextInspect,
    DillDataBase64,
    FuncXSerializer,
    JSONData,
    PureSourceDill,
    PureSourceTextInspect,
    choice,
    pack_buffers,
)
from tests.live import another_user, running_endpoint

JSON_PATH = "funcx.serialize.JSONData"
GC_JSON_PATH = "globus_compute_sdk.serialize.concretes.JSONData"


def pairs(n):
    return [{"i": i, "sq": i * i} for i in range(n)]


def a_set(n):
    return set(range(n))


def a_function(_):
    return len


def double(x):
    return 2 * x


# =================================================================== pure
@pytest.mark.parametrize("value", [JSONData(), JSONData, JSON_PATH, GC_JSON_PATH,
                                   "globus_compute_sdk.serialize.JSONData",
                                   "funcx.serialize.strategies.JSONData", "JSONData"])
def test_every_strategylike_form_resolves_to_one_canonical_path(value):
    assert choice.resolve(value) is choice.SELECTABLE["JSONData"]
    assert choice.import_paths([value]) == [JSON_PATH]


@pytest.mark.parametrize("value", ["os.system", "funcx.serialize.Nope", "builtins.JSONData",
                                   "subprocess.JSONData", "", int, object()])
def test_an_unknown_strategy_is_refused_naming_the_known_ones(value):
    with pytest.raises(choice.StrategyChoiceError, match="DillDataBase64"):
        choice.resolve(value)


def test_a_path_is_resolved_by_name_never_imported(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda *a: pytest.fail("imported"))
    assert choice.resolve("globus_compute_sdk.serialize.DillCode").identifier == "01"


def test_code_and_data_strategies_are_not_interchangeable():
    with pytest.raises(choice.StrategyChoiceError, match="data serialization strategy"):
        ComputeSerializer(strategy_code=JSONData())
    with pytest.raises(choice.StrategyChoiceError, match="code serialization strategy"):
        ComputeSerializer(strategy_data=DillCode)


def test_globus_compute_names_and_identifiers():
    ids = {c.__name__: c().identifier for c in (
        DillDataBase64, JSONData, DillCode, DillCodeTextInspect, DillCodeSource,
        PureSourceTextInspect, PureSourceDill, AllCodeStrategies, AllDataStrategies)}
    assert ids == {"DillDataBase64": "00", "JSONData": "11", "DillCode": "01",
                   "DillCodeTextInspect": "03", "DillCodeSource": "04",
                   "PureSourceTextInspect": "st", "PureSourceDill": "sd",
                   "AllCodeStrategies": "12", "AllDataStrategies": "13"}


def test_serialize_from_list_takes_the_first_that_can_in_order():
    assert choice.serialize_from_list([1, 2], [JSON_PATH, DillDataBase64()]) == "11\n[1, 2]"
    out = choice.serialize_from_list({1, 2}, [JSON_PATH, "funcx.serialize.DillDataBase64"])
    assert out.startswith("00\n") and FuncXSerializer().deserialize(out) == {1, 2}
    # a callable result needs a code strategy: JSONData is skipped, not tried
    out = choice.serialize_from_list(double, [JSONData(), DillCode()])
    assert out.startswith("01\n") and FuncXSerializer().deserialize(out)(4) == 8


def test_serialize_from_list_names_each_failure_when_none_can():
    with pytest.raises(SerializationError) as ei:
        choice.serialize_from_list({1}, [JSONData()])
    assert "JSONData" in str(ei.value) and "set" in str(ei.value)


def test_the_worker_fails_a_result_none_of_its_serializers_can_take():
    from endpoint.execute import Executor
    from funcx.protocol.messages import Task

    ser = FuncXSerializer()
    task = Task("t1", "f1", ser.serialize_payload((3,), {}),
                function_code=ser.serialize_function(a_set), result_serializers=[JSON_PATH])
    r = Executor().run(task)
    assert r.status == "failed" and r.details["error_code"] == error_codes.RESULT_NOT_SERIALIZABLE
    exc = ser.deserialize(r.exc_data)
    assert isinstance(exc, ResultSerializationFailed) and "JSONData" in str(exc)
    assert exc.code == error_codes.RESULT_NOT_SERIALIZABLE
    task.result_serializers = [JSON_PATH, "funcx.serialize.DillDataBase64"]
    r = Executor().run(task)
    assert r.status == "success" and ser.deserialize(r.data) == {0, 1, 2}


@pytest.mark.parametrize("values, ids", [
    (["funcx.serialize.DillCode", JSON_PATH], {"01", "11"}),
    (["globus_compute_sdk.*Code", "globus_compute_sdk.serialize.DillDataBase64"],
     {"01", "03", "04", "st", "sd", "10", "12", "00"}),
    (["funcx.*Data", "funcx.serialize.AllCodeStrategies"], {"00", "11", "13", "12"}),
])
def test_allowlists_as_globus_compute_reads_them(values, ids):
    assert choice.parse_allowlist(values) == frozenset(ids)


@pytest.mark.parametrize("values, match", [
    (["funcx.serialize.DillCode"], "at least one code and one data"),
    (["globus_compute_sdk.*Code", "funcx.serialize.DillCode", JSON_PATH], "cannot be mixed"),
    ("funcx.serialize.DillCode", "a list"),
    (["os.path"], "not a serialization strategy"),
])
def test_a_bad_allowlist_is_refused_with_what_to_fix(values, match):
    with pytest.raises(choice.StrategyChoiceError, match=match):
        choice.parse_allowlist(values)


def test_refusal_names_the_part_and_the_allowed_serializers():
    allowed = choice.parse_allowlist(["funcx.serialize.DillCodeSource", JSON_PATH])
    ser = FuncXSerializer("04", "11")
    code, payload = ser.serialize_function(double), ser.serialize_payload((1,), {})
    assert choice.refusal(code, payload, allowed) is None
    assert choice.refusal(code, payload, None) is None
    why = choice.refusal(code, FuncXSerializer().serialize_payload((1,), {}), allowed)
    assert "arguments" in why and "DillDataBase64" in why and "JSONData" in why
    why = choice.refusal(FuncXSerializer("01").serialize_function(double), payload, allowed)
    assert "function" in why and "DillCode" in why and "DillCodeSource" in why


def test_the_agent_refuses_only_the_task_that_breaks_the_allowlist():
    from endpoint.agent_state import NEW, AgentState, CancelledFlags, Dispatch, EntriesRead, Fail
    from funcx.protocol.messages import Task
    from funcx.protocol.streams import encode_task_batch

    allowed = choice.parse_allowlist(["funcx.serialize.DillCodeSource", JSON_PATH])
    state = AgentState(10, 10, allowed_serializers=allowed)
    state.functions["f"] = FuncXSerializer("04").serialize_function(double)
    good = Task("good", "f", FuncXSerializer(data_strategy="11").serialize_payload((1,), {}))
    bad = Task("bad", "f", FuncXSerializer().serialize_payload((1,), {}))
    state.cursor = NEW
    state.handle(EntriesRead([("1-0", encode_task_batch([good, bad]))]))
    out = state.handle(CancelledFlags(["good", "bad"], [False, False]))
    fails = [r for i in out if isinstance(i, Fail) for r in i.results]
    sent = [t.task_id for i in out if isinstance(i, Dispatch) for t in i.tasks]
    assert sent == ["good"] and [r.task_id for r in fails] == ["bad"]
    assert fails[0].details["error_code"] == error_codes.SERIALIZER_NOT_ALLOWED
    assert "DillDataBase64" in fails[0].data and "JSONData" in fails[0].data


def test_fit_keeps_allowed_strategies_and_replaces_the_others():
    paths = ["funcx.serialize.DillCodeSource", JSON_PATH]
    assert choice.fit(None, "00", None) == (None, "00")
    assert choice.fit(None, "00", paths) == ("04", "11")
    assert choice.fit("04", "11", paths) == ("04", "11")
    assert choice.fit("01", "00", ["globus_compute_sdk.*Code", "x.y.Newer", JSON_PATH]) == \
        ("01", "11")


def test_all_code_strategies_fall_back_to_the_next_part_in_order():
    out = AllCodeStrategies().serialize(double)
    parts = [b[:2] for b in FuncXSerializer.unpack_buffers(out[3:])]
    assert parts == ["st", "sd", "01"]
    # the source parts unusable on the endpoint (e.g. a name it cannot find):
    # the dill part still gives the function
    broken = "12\n" + pack_buffers(["st\nnot_here:x = 1\n", "sd\nnot_here:y = 2\n",
                                    DillCode().serialize(double)])
    assert FuncXSerializer().deserialize(broken)(5) == 10
    with pytest.raises(SerializationError, match="PureSourceTextInspect"):
        FuncXSerializer().deserialize("12\n" + pack_buffers(["st\nnot_here:x = 1\n"]))


def test_a_serializer_can_refuse_to_deserialize_other_strategies():
    ser = ComputeSerializer(allowed_deserializer_types=[DillCode, JSONData])
    assert ser.deserialize("11\n[1]") == [1]
    with pytest.raises(SerializationError, match="DillDataBase64.*not allowed"):
        ser.deserialize(FuncXSerializer().serialize(1))


def test_config_checks_allowed_serializers_and_lists_them_in_metadata():
    from endpoint.config import Config

    c = Config(allowed_serializers=["globus_compute_sdk.serialize.DillCodeSource", JSON_PATH])
    assert c.serializer_metadata() == {
        "allowed_serializers": ["funcx.serialize.DillCodeSource", JSON_PATH]}
    assert Config().serializer_metadata() == {}
    with pytest.raises(ValueError, match="one code and one data"):
        Config(allowed_serializers=[JSON_PATH])


# =================================================================== live
@pytest.fixture(scope="module")
def fns(fxc):
    return {f.__name__: fxc.register_function(f) for f in (pairs, a_set, a_function)}


def wait_doc(fxc, tid: str) -> dict:
    doc = fxc.wait([tid], timeout=60)[tid]
    assert doc["status"] in ("success", "failed"), doc
    return doc


def raw_task(http, tid: str) -> dict:
    r = http.get(f"{http.base_url}/v2/tasks/{tid}", timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_json_results_from_run_are_readable_without_python_serializers(fxc, fns, endpoint, http):
    tid = fxc.run(3, endpoint_id=endpoint, function_id=fns["pairs"],
                  result_serializers=[JSONData()])
    assert wait_doc(fxc, tid)["status"] == "success"
    assert fxc.get_result(tid) == pairs(3)
    doc = raw_task(http, tid)  # what any language reads: strip the "11\n" header
    assert doc["result"].startswith("11\n")
    assert json.loads(doc["result"][3:]) == pairs(3)


def test_json_results_from_a_batch_in_globus_compute_spelling(fxc, fns, endpoint, http):
    batch = fxc.create_batch(result_serializers=[GC_JSON_PATH])
    for n in (1, 2):
        batch.add(n, endpoint_id=endpoint, function_id=fns["pairs"])
    tids = fxc.batch_run(batch)
    for n, tid in zip((1, 2), tids):
        assert wait_doc(fxc, tid)["status"] == "success"
        assert json.loads(raw_task(http, tid)["result"][3:]) == pairs(n)


def test_json_results_from_the_executor(fxc, endpoint, http):
    from funcx import FuncXExecutor

    with FuncXExecutor(endpoint_id=endpoint, client=fxc,
                       result_serializers=[JSONData(), DillDataBase64()]) as fxe:
        as_json, as_dill = fxe.submit(pairs, 2), fxe.submit(a_set, 3)
        assert as_json.result(timeout=60) == pairs(2)
        assert as_dill.result(timeout=60) == {0, 1, 2}  # not JSON-able: the next one
    assert raw_task(http, as_json.task_id)["result"].startswith("11\n")
    assert raw_task(http, as_dill.task_id)["result"].startswith("00\n")


def test_a_result_no_requested_serializer_can_take_fails_named(fxc, fns, endpoint, http):
    tid = fxc.run(2, endpoint_id=endpoint, function_id=fns["a_set"],
                  result_serializers=[JSON_PATH])
    doc = wait_doc(fxc, tid)
    assert doc["status"] == "failed"
    with pytest.raises(ResultSerializationFailed) as ei:
        fxc.get_result(tid)
    assert ei.value.code == error_codes.RESULT_NOT_SERIALIZABLE
    assert "JSONData" in str(ei.value) and "DillDataBase64" in str(ei.value)  # what to do
    assert raw_task(http, tid)["details"]["error_code"] == error_codes.RESULT_NOT_SERIALIZABLE


def test_a_callable_result_skips_json_for_the_code_strategy_next(fxc, fns, endpoint):
    tid = fxc.run(0, endpoint_id=endpoint, function_id=fns["a_function"],
                  result_serializers=[JSONData, "funcx.serialize.DillCode"])
    assert wait_doc(fxc, tid)["status"] == "success"
    assert fxc.get_result(tid) is len


def test_unknown_result_serializers_are_refused_at_submit_nothing_queued(
        fxc, fns, endpoint, http):
    tg = str(uuid.uuid4())
    fid = fns["pairs"]
    payload = FuncXSerializer().serialize_payload((1,), {})
    for bad in (["os.system"], "funcx.serialize.JSONData", [1], ["x"] * 17):
        r = http.post(f"{http.base_url}/v3/endpoints/{endpoint}/submit", timeout=30,
                      json={"tasks": {fid: [payload]}, "task_group_id": tg,
                            "result_serializers": bad})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["code"] == error_codes.RESULT_SERIALIZERS_INVALID
    r = http.get(f"{http.base_url}/v2/taskgroup/{tg}", timeout=30)
    assert r.status_code == 404 or r.json().get("tasks") == []
    with pytest.raises(choice.StrategyChoiceError):  # the SDK says so before sending
        fxc.run(1, endpoint_id=endpoint, function_id=fid, result_serializers=["os.system"])
    with pytest.raises(BadRequest):
        fxc.submit_tasks(endpoint, [(fid, payload)], result_serializers=["os.system"])


def test_register_source_code_runs(fxc, endpoint):
    source = "import math\n\ndef hyp(a, b):\n    return math.hypot(a, b)\n"
    fid = fxc.register_source_code(source, "hyp", description="from text")
    tid = fxc.run(3, 4, endpoint_id=endpoint, function_id=fid)
    assert wait_doc(fxc, tid)["status"] == "success"
    assert fxc.get_result(tid) == 5.0
    assert fxc.get_function(fid)["function_name"] == "hyp"
    with pytest.raises(ValueError, match="compile"):
        fxc.register_source_code("def hyp(:\n", "hyp")


def test_all_code_strategies_from_the_executor(fxc, endpoint):
    from funcx import FuncXExecutor

    ser = ComputeSerializer(strategy_code=AllCodeStrategies(), strategy_data=AllDataStrategies())
    with FuncXExecutor(endpoint_id=endpoint, client=fxc, serializer=ser) as fxe:
        assert fxe.submit(double, 21).result(timeout=60) == 42


# ----------------------------------------------- an endpoint that restricts
ALLOWED = ["globus_compute_sdk.serialize.DillCodeSource", "funcx.serialize.PureSourceTextInspect",
           JSON_PATH]
RESTRICTED = "serializer-choice-ep"


@pytest.fixture(scope="module")
def restricted_ep(service):
    """A public endpoint that accepts DillCodeSource / PureSourceTextInspect
    functions and JSON arguments only."""
    with running_endpoint(RESTRICTED, 1, public=True, allowed_serializers=ALLOWED) as eid:
        yield eid


@pytest.fixture(scope="module")
def tenant(service, redis_client):
    """A client of a second user, choosing strategies the endpoint allows."""
    return another_user(redis_client, "serde", code_serialization_strategy=PureSourceTextInspect(),
                        data_serialization_strategy="globus_compute_sdk.serialize.JSONData")


def test_the_endpoint_shows_its_allowed_serializers(fxc, restricted_ep):
    from typer.testing import CliRunner

    from funcx_cli.main import app

    meta = fxc.get_endpoint_metadata(restricted_ep)["metadata"]
    assert meta["allowed_serializers"] == sorted(
        ["funcx.serialize.DillCodeSource", "funcx.serialize.PureSourceTextInspect", JSON_PATH])
    out = CliRunner().invoke(app, ["endpoint", "show", restricted_ep, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["metadata"]["allowed_serializers"] == meta["allowed_serializers"]


def test_a_disallowed_strategy_is_refused_while_another_users_task_completes(
        fxc, tenant, restricted_ep, http):
    mine_fid = fxc.register_function(pairs)  # dill source (allowed), dill arguments (not)
    theirs_fid = tenant.register_function(pairs)
    mine = fxc.run(2, endpoint_id=restricted_ep, function_id=mine_fid)
    theirs = tenant.run(2, endpoint_id=restricted_ep, function_id=theirs_fid,
                        result_serializers=[JSONData()])
    assert tenant.wait([theirs], timeout=60)[theirs]["status"] == "success"
    assert tenant.get_result(theirs) == pairs(2)
    assert wait_doc(fxc, mine)["status"] == "failed"
    with pytest.raises(SerializerNotAllowed) as ei:
        fxc.get_result(mine)
    assert ei.value.code == error_codes.SERIALIZER_NOT_ALLOWED
    assert "arguments" in str(ei.value) and "DillDataBase64" in str(ei.value)
    assert "JSONData" in str(ei.value)  # what it would take
    assert raw_task(http, mine)["details"]["error_code"] == error_codes.SERIALIZER_NOT_ALLOWED


def test_a_function_in_a_disallowed_strategy_is_refused(fxc, restricted_ep):
    fid = fxc.register_function(pairs, serializer=FuncXSerializer("01"))
    tid = fxc.run(1, endpoint_id=restricted_ep, function_id=fid)
    fxc.wait([tid], timeout=60)
    with pytest.raises(SerializerNotAllowed, match="function.*DillCode.*DillCodeSource"):
        fxc.get_result(tid)


def test_the_executor_picks_permitted_strategies_up_front(fxc, restricted_ep):
    from funcx import FuncXExecutor

    with FuncXExecutor(endpoint_id=restricted_ep, client=fxc) as fxe:
        assert fxe.submit(pairs, 3).result(timeout=60) == pairs(3)
    ser = fxc.serializer_for(restricted_ep)
    assert ser.data_serializer.identifier == "11"
    assert ser.code_serializer.identifier == "04"


def test_a_bad_allowlist_in_config_py_says_why_at_load(tmp_path):
    from endpoint.config_file import ConfigError, load

    path = tmp_path / "config.py"
    path.write_text("from endpoint.config import Config\n"
                    "config = Config(allowed_serializers=['funcx.serialize.JSONData'])\n")
    with pytest.raises(ConfigError, match="config.py:2: .*one code and one data"):
        load(path)


def test_an_unreachable_service_leaves_the_clients_own_serializer_and_no_memory(service, endpoint,
                                                                                monkeypatch):
    """The executor's submit asks serializer_for: while the service is down it
    must not raise (the executor takes submissions through an outage: the
    fault suite's service restart), nor remember the fallback."""
    from funcx import FuncXClient
    from funcx.errors import ServiceUnreachable

    client = FuncXClient()

    def down(eid):
        raise ServiceUnreachable("the service is restarting")

    monkeypatch.setattr(client, "get_endpoint_metadata", down)
    assert client.serializer_for(endpoint) is client.fx_serializer
    assert endpoint not in client._ep_serializers
    monkeypatch.undo()
    assert client.serializer_for(endpoint) is not None and endpoint in client._ep_serializers
