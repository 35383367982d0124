"""End to end through the SDK: the real service, real endpoints, real workers.

Functions sent from this module travel as source code, so each one is
self-contained (imports inside the body, no module globals).
"""
from __future__ import annotations

import base64
import os
import uuid
from dataclasses import dataclass

import pytest

from funcx.errors import MaxResultSizeExceeded, SerializationError
from funcx.serialize import FuncXSerializer, pack_buffers

AUX_MAX_RESULT_BYTES = 64 * 1024  # the auxiliary endpoint's FUNCX_MAX_RESULT_BYTES
WAIT_S = 45


# ------------------------------------------------------------- remote functions
def identity(x):
    return x


def describe_call(a, b, *rest, scale=1, **extra):
    return {"a": a, "b": b, "rest": list(rest), "scale": scale, "extra": extra,
            "total": (a + b + sum(rest)) * scale}


def make_value(kind):
    import collections
    import datetime
    import decimal
    import fractions

    values = {
        "datetime": datetime.datetime(2024, 2, 29, 12, 30, 5),
        "decimal": decimal.Decimal("3.1415926535897932384626"),
        "fraction": fractions.Fraction(22, 7),
        "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
        "counter": collections.Counter("abracadabra"),
    }
    return values[kind]


def divide(a, b):
    result = a / b
    return result


def square(x):
    return x * x


def negate(x):
    return -x


def make_generator(n):
    return (i for i in range(n))


def blob(n):
    return "x" * n


# -------------------------------------------------------------------- helpers
def _task_doc(http, tid: str) -> dict:
    resp = http.get(f"{http.base_url}/v2/tasks/{tid}")
    assert resp.status_code == 200, resp.text
    return resp.json()


def _ep_status(http, eid: str) -> dict:
    resp = http.get(f"{http.base_url}/v2/endpoints/{eid}/status")
    assert resp.status_code == 200, resp.text
    return resp.json()


@dataclass
class AuxEndpoint:
    """A second endpoint under its own fresh name, with a small result limit."""

    name: str
    eid: str | None = None

    def start(self) -> str:
        from endpoint import daemon

        # the agent, its managers and workers inherit the environment of `start`
        old = os.environ.get("FUNCX_MAX_RESULT_BYTES")
        os.environ["FUNCX_MAX_RESULT_BYTES"] = str(AUX_MAX_RESULT_BYTES)
        try:
            self.eid = daemon.start(self.name)
        finally:
            if old is None:
                os.environ.pop("FUNCX_MAX_RESULT_BYTES", None)
            else:
                os.environ["FUNCX_MAX_RESULT_BYTES"] = old
        return self.eid

    def stop(self) -> bool:
        from endpoint import daemon

        return daemon.stop(self.name)


@pytest.fixture(scope="module")
def aux_endpoint(service, fxc):
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir

    name = f"e2e-aux-{uuid.uuid4().hex[:8]}"
    ep = EndpointDir(name)
    assert not ep.exists()
    write_template(ep.config_file, name, workers=1)
    aux = AuxEndpoint(name)
    aux.start()
    yield aux
    aux.stop()
    fxc.delete_endpoint(aux.eid)


@pytest.fixture(scope="module")
def fids(fxc):
    """Each remote function registered once for the module."""
    return {f.__name__: fxc.register_function(f) for f in (
        identity, describe_call, make_value, divide, square, negate, make_generator, blob)}


# ---------------------------------------------------------------------- tests
RETURN_VALUES = [
    42, -7, 2**100, 3.25, float("inf"), 1 + 2j, True, None, "", "héllo wörld ✓",
    b"\x00\xffbytes", [1, [2, [3]]], (1, "two", 3.0), {"k": [1, 2], "n": {"x": None}},
    {1, 2, 3}, frozenset({"a"}), bytearray(b"ba"), range(3, 9, 2), list(range(1000)),
]


def test_return_values_of_several_types(fxc, endpoint, fids):
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    for v in RETURN_VALUES:
        batch.add(v, endpoint_id=endpoint, function_id=fids["identity"])
    ids = fxc.batch_run(batch)
    assert len(ids) == len(RETURN_VALUES)
    fxc.wait(ids, timeout=WAIT_S)
    for tid, sent in zip(ids, RETURN_VALUES):
        got = fxc.get_result(tid)
        assert type(got) is type(sent), (sent, got)
        assert got == sent


def test_values_made_remotely(fxc, endpoint, fids):
    import collections
    import datetime
    import decimal
    import fractions

    expected = {
        "datetime": datetime.datetime(2024, 2, 29, 12, 30, 5),
        "decimal": decimal.Decimal("3.1415926535897932384626"),
        "fraction": fractions.Fraction(22, 7),
        "ordered": collections.OrderedDict([("z", 1), ("a", 2)]),
        "counter": collections.Counter("abracadabra"),
    }
    ids = {k: fxc.run(k, endpoint_id=endpoint, function_id=fids["make_value"]) for k in expected}
    fxc.wait(list(ids.values()), timeout=WAIT_S)
    for kind, tid in ids.items():
        got = fxc.get_result(tid)
        assert type(got) is type(expected[kind])
        assert got == expected[kind]
    assert list(fxc.get_result(ids["ordered"])) == ["z", "a"]


def test_positional_args_and_kwargs(fxc, endpoint, fids):
    fid = fids["describe_call"]
    t1 = fxc.run(1, 2, endpoint_id=endpoint, function_id=fid)
    t2 = fxc.run(1, 2, 3, 4, endpoint_id=endpoint, function_id=fid, scale=10, colour="red")
    t3 = fxc.run(endpoint_id=endpoint, function_id=fid, a=5, b=6)
    batch = fxc.create_batch()
    batch.add(fid, endpoint, args=(7, 8, 9), kwargs={"scale": 2, "note": [1]})  # ids-first form
    (t4,) = fxc.batch_run(batch)
    fxc.wait([t1, t2, t3, t4], timeout=WAIT_S)
    assert fxc.get_result(t1) == {"a": 1, "b": 2, "rest": [], "scale": 1, "extra": {}, "total": 3}
    assert fxc.get_result(t2) == {"a": 1, "b": 2, "rest": [3, 4], "scale": 10,
                                  "extra": {"colour": "red"}, "total": 100}
    assert fxc.get_result(t3)["total"] == 11
    assert fxc.get_result(t4) == {"a": 7, "b": 8, "rest": [9], "scale": 2,
                                  "extra": {"note": [1]}, "total": 48}


def test_remote_exception_is_reraised_with_traceback(fxc, endpoint, fids, http):
    tid = fxc.run(1, 0, endpoint_id=endpoint, function_id=fids["divide"])
    fxc.wait([tid], timeout=WAIT_S)
    with pytest.raises(ZeroDivisionError) as info:
        fxc.get_result(tid)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert tid in notes
    assert "line 2, in divide" in notes
    assert "result = a / b" in notes  # the failing line itself, not just its number
    assert "ZeroDivisionError: division by zero" in notes

    doc = _task_doc(http, tid)
    assert doc["task_id"] == tid
    assert doc["status"] == "failed"
    assert "result" not in doc
    assert "in divide" in doc["exception"]
    assert "result = a / b" in doc["exception"]
    assert "ZeroDivisionError" in doc["exception"]
    assert float(doc["completion_t"]) > 0
    assert fxc.get_task(tid)["status"] == "failed"


def test_batch_of_1000_in_order(fxc, endpoint, fids):
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    # interleave two functions so the submit groups them differently from the order added
    for i in range(1000):
        fn = "square" if i % 3 else "negate"
        batch.add(i, endpoint_id=endpoint, function_id=fids[fn])
    assert len(batch) == 1000
    ids = fxc.batch_run(batch)
    assert len(ids) == 1000 and len(set(ids)) == 1000
    fxc.wait(ids, timeout=WAIT_S)
    results = fxc.get_batch_result(ids)
    assert list(results) == ids
    assert all(r["status"] == "success" for r in results.values())
    got = [results[t]["result"] for t in ids]
    assert got == [i * i if i % 3 else -i for i in range(1000)]


def test_unserializable_result_fails_only_that_task(fxc, endpoint, fids, http):
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    batch.add(5, endpoint_id=endpoint, function_id=fids["square"])
    batch.add(3, endpoint_id=endpoint, function_id=fids["make_generator"])
    batch.add(6, endpoint_id=endpoint, function_id=fids["square"])
    ok1, bad, ok2 = fxc.batch_run(batch)
    fxc.wait([ok1, bad, ok2], timeout=WAIT_S)
    assert fxc.get_result(ok1) == 25
    assert fxc.get_result(ok2) == 36
    with pytest.raises(SerializationError) as info:
        fxc.get_result(bad)
    assert "generator" in str(info.value)
    assert "cannot be serialized" in str(info.value)
    doc = _task_doc(http, bad)
    assert doc["status"] == "failed"
    assert "SerializationError" in doc["exception"]
    assert float(doc["completion_t"]) > 0


def test_undeserializable_argument_fails_only_that_task(fxc, endpoint, fids, http):
    # args whose pickle names a module the endpoint does not have:
    # MARK, GLOBAL no_such_module_fx.Thing, TUPLE, STOP  ->  (Thing,)
    raw = b"(cno_such_module_fx\nThing\nt."
    ser = FuncXSerializer()
    bad_payload = pack_buffers(["00\n" + base64.encodebytes(raw).decode(), ser.serialize({})])
    good_payload = ser.serialize_payload((9,), {})
    fid = fids["square"]
    resp = http.post(f"{http.base_url}/v3/endpoints/{endpoint}/submit",
                     json={"tasks": {fid: [good_payload, bad_payload, good_payload]},
                           "create_queue": True})
    assert resp.status_code == 200, resp.text
    ok1, bad, ok2 = resp.json()["tasks"][fid]
    fxc.wait([ok1, bad, ok2], timeout=WAIT_S)
    assert fxc.get_result(ok1) == 81
    assert fxc.get_result(ok2) == 81
    with pytest.raises(SerializationError) as info:
        fxc.get_result(bad)
    assert "no_such_module_fx" in str(info.value)
    doc = _task_doc(http, bad)
    assert doc["status"] == "failed"
    assert "no_such_module_fx" in doc["exception"]
    assert float(doc["completion_t"]) > 0


def test_result_over_the_size_limit(fxc, aux_endpoint, fids, http):
    fid = fids["blob"]
    small = fxc.run(1000, endpoint_id=aux_endpoint.eid, function_id=fid)
    big = fxc.run(AUX_MAX_RESULT_BYTES * 2, endpoint_id=aux_endpoint.eid, function_id=fid)
    fxc.wait([small, big], timeout=WAIT_S)
    assert fxc.get_result(small) == "x" * 1000
    with pytest.raises(MaxResultSizeExceeded) as info:
        fxc.get_result(big)
    assert f"limit of {AUX_MAX_RESULT_BYTES} bytes" in str(info.value)
    doc = _task_doc(http, big)
    assert doc["status"] == "failed"
    assert "MaxResultSizeExceeded" in doc["exception"]
    assert "result" not in doc


def test_offline_endpoint_queues_until_it_returns(fxc, aux_endpoint, fids, http):
    eid = aux_endpoint.eid
    assert aux_endpoint.stop() is True
    assert _ep_status(http, eid)["status"] == "offline"

    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    for i in range(6):
        batch.add(i, endpoint_id=eid, function_id=fids["square"])
    ids = fxc.batch_run(batch)
    docs = http.post(f"{http.base_url}/v2/batch_status", json={"task_ids": ids}).json()["results"]
    assert [docs[t]["status"] for t in ids] == ["waiting-for-ep"] * 6
    assert all("completion_t" not in docs[t] and "result" not in docs[t] for t in ids)
    status = _ep_status(http, eid)
    assert status["status"] == "offline"
    assert status["details"]["outstanding_tasks"] == 6

    assert aux_endpoint.start() == eid  # same directory, same endpoint id
    fxc.wait(ids, timeout=WAIT_S)
    assert [fxc.get_result(t) for t in ids] == [i * i for i in range(6)]
    status = _ep_status(http, eid)
    assert status["status"] == "online"
    assert status["details"]["outstanding_tasks"] == 0
