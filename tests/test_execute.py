"""Unit tests of endpoint/execute.py: running one task in-process."""
from __future__ import annotations

import re

import pytest

from endpoint.execute import Executor, failure
from funcx.errors import MaxResultSizeExceeded, SerializationError
from funcx.protocol.messages import Task
from funcx.serialize import FuncXSerializer, pack_buffers

SER = FuncXSerializer()
BY_REF = FuncXSerializer(code_strategy="01")  # module functions travel by reference


class CustomError(Exception):
    def __init__(self, code):
        super().__init__(f"custom failure {code}")
        self.code = code


def add(a, b=0):
    return a + b


def divide_by_zero(x):
    return x / 0


def raise_custom(code):
    raise CustomError(code)


def make_generator():
    return (i for i in range(3))


def big_result(n):
    return "x" * n


def mktask(fn, *args, ser: FuncXSerializer = SER, **kwargs) -> Task:
    return Task(task_id="t1", function_id="f1", task_group_id="g1",
                function_code=ser.serialize_function(fn),
                payload=SER.serialize_payload(args, kwargs))


def first_frame(tb_text: str) -> str:
    m = re.search(r'File "([^"]*)", line \d+, in (\S+)', tb_text)
    assert m, tb_text
    return f"{m.group(1)} {m.group(2)}"


@pytest.fixture
def ex() -> Executor:
    return Executor()


def test_success(ex):
    r = ex.run(mktask(add, 2, b=40))
    assert r.status == "success"
    assert r.task_id == "t1" and r.task_group_id == "g1"
    assert r.data.startswith("00\n")
    assert SER.deserialize(r.data) == 42
    assert r.exc_data == ""
    assert r.details["exec_end"] >= r.details["exec_start"]


def test_success_by_reference_function(ex):
    r = ex.run(mktask(add, "a", "b", ser=BY_REF))
    assert r.status == "success"
    assert SER.deserialize(r.data) == "ab"


def test_function_cache_is_used(ex):
    ex.run(mktask(add, 1))
    r = ex.run(mktask(add, 2, 3))
    assert SER.deserialize(r.data) == 5
    assert ex.functions.hits == 1


def test_raising_function(ex):
    r = ex.run(mktask(divide_by_zero, 1))
    assert r.status == "failed"
    assert r.task_id == "t1" and r.task_group_id == "g1"
    assert "Traceback" in r.data
    assert "ZeroDivisionError" in r.data
    assert "divide_by_zero" in r.data
    frame = first_frame(r.data)
    assert "endpoint/execute.py" not in frame
    assert frame.endswith(" divide_by_zero")
    exc = SER.deserialize(r.exc_data)
    assert type(exc) is ZeroDivisionError


def test_raising_custom_exception_round_trips(ex):
    r = ex.run(mktask(raise_custom, 7, ser=BY_REF))
    assert r.status == "failed"
    assert "CustomError: custom failure 7" in r.data
    assert first_frame(r.data).endswith(" raise_custom")
    assert "endpoint/execute.py" not in first_frame(r.data)
    exc = SER.deserialize(r.exc_data)
    assert type(exc) is CustomError
    assert exc.code == 7


def test_exception_chain_is_in_traceback(ex):
    src = ("def chained():\n"
           "    try:\n"
           "        {}['k']\n"
           "    except KeyError as e:\n"
           "        raise RuntimeError('wrapped') from e\n")
    fn_code = "st\nchained:" + src
    task = Task("t1", "f1", payload=SER.serialize_payload((), {}),
                function_code=pack_buffers([fn_code]))
    r = ex.run(task)
    assert r.status == "failed"
    assert "KeyError" in r.data and "RuntimeError: wrapped" in r.data
    assert "direct cause" in r.data
    assert type(SER.deserialize(r.exc_data)) is RuntimeError


@pytest.mark.parametrize("payload", [
    "00\n",  # not a packed buffer
    pack_buffers(["zz\nnope"]),  # one buffer only
    pack_buffers(["zz\nnope", SER.serialize({})]),  # unknown identifier
    pack_buffers(["00\n!!!notbase64\n", SER.serialize({})]),  # corrupt data
])
def test_undeserializable_args(ex, payload):
    task = mktask(add, 1)
    task.payload = payload
    r = ex.run(task)
    assert r.status == "failed"
    assert "SerializationError" in r.data
    assert type(SER.deserialize(r.exc_data)) is SerializationError


def test_undeserializable_function(ex):
    task = mktask(add, 1)
    task.function_code = pack_buffers(["01\nAAAA\n"])
    r = ex.run(task)
    assert r.status == "failed"
    assert "SerializationError" in r.data


def test_unserializable_result(ex):
    r = ex.run(mktask(make_generator, ser=BY_REF))
    assert r.status == "failed"
    assert "SerializationError" in r.data
    assert "generator" in r.data
    assert type(SER.deserialize(r.exc_data)) is SerializationError


def test_result_larger_than_limit():
    ex = Executor(max_result_bytes=1000)
    ok = ex.run(mktask(big_result, 10))
    assert ok.status == "success"
    r = ex.run(mktask(big_result, 5000))
    assert r.status == "failed"
    assert "MaxResultSizeExceeded" in r.data
    assert "1000" in r.data
    assert type(SER.deserialize(r.exc_data)) is MaxResultSizeExceeded


def test_failure_without_traceback():
    task = mktask(add, 1)
    r = failure(task, ValueError("plain"), note="x")
    assert r.status == "failed"
    assert r.data.strip() == "ValueError: plain"
    assert r.details["note"] == "x"
    assert type(SER.deserialize(r.exc_data)) is ValueError


def test_unserializable_exception_leaves_exc_data_empty():
    class Local(Exception):
        def __reduce__(self):
            raise TypeError("no pickling")

    r = failure(mktask(add, 1), Local("boom"))
    assert r.status == "failed"
    assert "boom" in r.data
    assert r.exc_data == ""
