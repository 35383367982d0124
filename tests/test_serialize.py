"""Unit tests of the funcX wire format (funcx/serialize/, API.md "Wire format")."""
from __future__ import annotations

import codecs
import json
import pickle

import dill
import pytest

from funcx.errors import SerializationError
from funcx.serialize import FunctionCache, FuncXSerializer, facade, pack_buffers, unpack_buffers
from funcx.serialize import strategies as st


# Module-level functions so that inspect/dill can find their source.
def double(x):
    return x * 2


def greet(name, punctuation="!"):
    return f"hello {name}{punctuation}"


def uses_colon(d):
    # a source body full of ':' characters, to stress ':'-joined formats
    return {k: v for k, v in d.items() if k != "x:y"}


@pytest.fixture
def ser() -> FuncXSerializer:
    return FuncXSerializer()


# --------------------------------------------------------------- API.md vectors
def test_api_vector_args_tuple(ser):
    assert ser.serialize((7,)) == "00\ngASVBQAAAAAAAABLB4WULg==\n"


def test_api_vector_result_14(ser):
    assert ser.serialize(14) == "00\ngARLDi4=\n"


def test_api_vectors_deserialize(ser):
    assert ser.deserialize("00\ngASVBQAAAAAAAABLB4WULg==\n") == (7,)
    assert ser.deserialize("00\ngARLDi4=\n") == 14


def test_payload_of_api_vector(ser):
    payload = ser.serialize_payload((7,), {})
    args_buf = "00\ngASVBQAAAAAAAABLB4WULg==\n"
    assert payload.startswith(f"{len(args_buf)}\n{args_buf}")
    assert ser.unpack_and_deserialize(payload) == [(7,), {}]


def test_large_data_is_mime_base64_76_char_lines(ser):
    data = bytes(range(256)) * 40  # ~10 kB of pickle
    out = ser.serialize(data)
    assert out.startswith("00\n")
    body = out[3:]
    assert body.endswith("\n")
    lines = body[:-1].split("\n")
    assert len(lines) > 2
    assert all(len(line) == 76 for line in lines[:-1])
    assert 0 < len(lines[-1]) <= 76
    assert codecs.decode(body.encode(), "base64") == dill.dumps(data)
    assert ser.deserialize(out) == data


# ------------------------------------------------------------ pack / unpack
@pytest.mark.parametrize("buffers", [
    [],
    [""],
    ["abc"],
    ["a\nb\n", "12\n34", "\n", ""],
    ["10\n", "3\nabc", "007"],  # buffers that look like length lines
    ["héllo wörld ✓", "日本語\n", "🙂"],  # lengths counted in characters
])
def test_pack_unpack_round_trip(buffers):
    packed = pack_buffers(buffers)
    assert unpack_buffers(packed) == buffers


def test_pack_format_exact():
    assert pack_buffers(["ab", "c\nd"]) == "2\nab3\nc\nd"


def test_pack_counts_characters_not_bytes():
    assert pack_buffers(["é🙂"]) == "2\né🙂"
    assert unpack_buffers("2\né🙂3\nabc") == ["é🙂", "abc"]


def test_serializer_exposes_pack_helpers(ser):
    assert ser.pack_buffers(["x"]) == "1\nx"
    assert ser.unpack_buffers("1\nx") == ["x"]


@pytest.mark.parametrize("packed", [
    "5",  # missing newline after the length
    "3\nabc7",  # second buffer without newline
    "x\nabc",  # non-numeric length
    "\nabc",  # empty length
    "-1\nabc",  # negative length
    "-3\nabc",  # negative length pointing back to the start (must not loop)
    "10\nabc",  # truncated
    "3\nab",  # truncated by one
])
def test_unpack_malformed_raises(packed):
    with pytest.raises(SerializationError):
        unpack_buffers(packed)


# --------------------------------------------------------------- strategies
DATA_OBJECTS = [42, "text", [1, 2, {"a": None}], {"k": [1.5, True]}]


@pytest.mark.parametrize("obj", DATA_OBJECTS)
def test_strategy_00_round_trip(obj):
    s = FuncXSerializer(data_strategy="00")
    out = s.serialize(obj)
    assert out.startswith("00\n")
    assert s.deserialize(out) == obj


def test_strategy_00_non_json_object():
    s = FuncXSerializer()
    obj = {1, 2, 3}
    assert s.deserialize(s.serialize(obj)) == obj


@pytest.mark.parametrize("obj", DATA_OBJECTS)
def test_strategy_11_json_round_trip(obj):
    s = FuncXSerializer(data_strategy="11")
    out = s.serialize(obj)
    assert out == "11\n" + json.dumps(obj)
    assert s.deserialize(out) == obj


def test_strategy_13_packs_json_then_dill():
    s = FuncXSerializer(data_strategy="13")
    out = s.serialize({"a": 1})
    assert out.startswith("13\n")
    bufs = unpack_buffers(out[3:])
    assert [b[:3] for b in bufs] == ["11\n", "00\n"]
    assert s.deserialize(out) == {"a": 1}


def test_strategy_13_falls_back_to_dill_when_json_fails():
    s = FuncXSerializer(data_strategy="13")
    out = s.serialize({1, 2})
    bufs = unpack_buffers(out[3:])
    assert [b[:3] for b in bufs] == ["00\n"]
    assert s.deserialize(out) == {1, 2}


def test_strategy_13_reader_skips_broken_buffer():
    good = "00\n" + codecs.encode(dill.dumps([5]), "base64").decode()
    payload = "13\n" + pack_buffers(["11\n{not json", good])
    assert FuncXSerializer().deserialize(payload) == [5]


@pytest.mark.parametrize("ident", ["01", "03", "04", "st", "sd", "10", "12"])
@pytest.mark.parametrize("fn, args, kwargs, expected", [
    (double, (21,), {}, 42),
    (greet, ("bob",), {"punctuation": "?"}, "hello bob?"),
    (uses_colon, ({"a": 1, "x:y": 2},), {}, {"a": 1}),
])
def test_code_strategy_round_trip(ident, fn, args, kwargs, expected):
    s = FuncXSerializer(code_strategy=ident)
    out = s.serialize(fn)
    assert out.startswith(ident + "\n")
    fn2 = FuncXSerializer().deserialize(out)
    assert callable(fn2)
    assert fn2.__name__ == fn.__name__
    assert fn2(*args, **kwargs) == expected


@pytest.mark.parametrize("ident", ["03", "04"])
def test_source_strategies_carry_name_and_source(ident):
    out = st.ALL[ident].serialize(double)
    name, source = pickle.loads(codecs.decode(out[3:].encode(), "base64"))
    assert name == "double"
    assert source.startswith("def double(x):")


@pytest.mark.parametrize("ident", ["st", "sd"])
def test_plain_source_strategies_are_name_colon_source(ident):
    out = st.ALL[ident].serialize(double)
    assert out.startswith(ident + "\ndouble:def double(x):\n")


def test_st_deserialize_foreign_plain_text():
    fn = FuncXSerializer().deserialize("st\nsquare:def square(x):\n    return x * x\n")
    assert fn(7) == 49


def test_dill_code_lambda_round_trip(ser):
    fn = lambda x: x + 1  # noqa: E731
    out = ser.serialize(fn)
    assert out.startswith("01\n")  # lambdas have no usable source: dill by value
    assert ser.deserialize(out)(1) == 2


# ---------------------------------------------------------- strategy choice
def test_order_for_data_and_classes(ser):
    assert ser._order_for((7,)) == facade.DATA_ORDER
    assert ser._order_for(dict) == facade.DATA_ORDER  # a class is data


def test_order_for_importable_function_prefers_source(ser):
    assert ser._order_for(double) == facade.CODE_ORDER_IMPORTABLE
    assert facade.CODE_ORDER_IMPORTABLE[0] != "01"
    assert ser.serialize(double)[:3] == facade.CODE_ORDER_IMPORTABLE[0] + "\n"


def test_order_for_main_function_prefers_dill():
    ns: dict = {"__name__": "__main__"}
    exec("def in_main(x):\n    return x - 1\n", ns)
    s = FuncXSerializer()
    assert s._order_for(ns["in_main"]) == facade.CODE_ORDER
    assert facade.CODE_ORDER[0] == "01"
    out = s.serialize(ns["in_main"])
    assert out.startswith("01\n")
    assert s.deserialize(out)(10) == 9


def test_order_for_explicit_code_strategy():
    assert FuncXSerializer(code_strategy="st")._order_for(double) == ("st",)


def test_serialize_falls_back_when_no_source():
    ns: dict = {"__name__": "some_module"}
    exec("def nosrc(x):\n    return x * 3\n", ns)  # importable-looking, no source
    s = FuncXSerializer()
    out = s.serialize(ns["nosrc"])
    assert out.startswith("01\n")
    assert s.deserialize(out)(2) == 6


def test_serialize_failure_raises_serialization_error():
    def gen():
        yield 1

    with pytest.raises(SerializationError):
        FuncXSerializer().serialize(gen())


# ------------------------------------------------------------ "10" combined
def test_combined_code_format():
    out = facade.STRATEGIES["10"].serialize(double)
    assert out.startswith("10\n")
    parts = out[3:].split(":")
    heads = parts[::2]
    assert heads == ["04\n", "01\n", "03\n"]
    for head, body in zip(parts[::2], parts[1::2]):
        assert st.ALL[head[:2]].deserialize(head + body)(4) == 8


def test_combined_code_skips_failing_first_part():
    good = st.ALL["01"].serialize(double)
    payload = "10\n" + ":".join(["04\n", "bm90IGEgcGlja2xl\n", good[:3], good[3:]])
    assert FuncXSerializer().deserialize(payload)(5) == 10


def test_combined_code_tolerates_trailing_source_text_parts():
    # Older SDKs appended plain ``st``/``sd`` parts whose text contains ':'.
    first = st.ALL["04"].serialize(uses_colon)
    tail = st.ALL["st"].serialize(uses_colon)
    payload = "10\n" + ":".join([first[:3], first[3:], tail[:3], tail[3:]])
    assert ":" in tail[3:]
    fn = FuncXSerializer().deserialize(payload)
    assert fn({"x:y": 1, "b": 2}) == {"b": 2}


def test_combined_code_only_misaligned_parts_fails():
    tail = st.ALL["st"].serialize(uses_colon)
    payload = "10\n" + ":".join([tail[:3], tail[3:]])
    with pytest.raises(SerializationError):
        FuncXSerializer().deserialize(payload)


def test_combined_code_nothing_serializable():
    def gen():
        yield 1

    with pytest.raises(SerializationError):
        facade.STRATEGIES["10"].serialize(gen())


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize("payload", ["zz\nabc", "99\nabc", "", "0", "00", "00abc", "st"])
def test_unknown_or_malformed_identifier(ser, payload):
    with pytest.raises(SerializationError):
        ser.deserialize(payload)


def test_corrupt_data_is_serialization_error_with_hint(ser):
    with pytest.raises(SerializationError, match="dill"):
        ser.deserialize("00\n!!!notbase64\n")


# ----------------------------------------------------------- FunctionCache
def test_function_cache_returns_same_object_and_counts_hits(ser):
    cache = FunctionCache(ser)
    code = ser.serialize_function(double)
    f1 = cache.get(code)
    assert cache.hits == 0
    f2 = cache.get(code)
    f3 = cache.get(ser.serialize_function(double))  # identical text again
    assert f1 is f2 is f3
    assert cache.hits == 2
    assert f1(3) == 6


def test_function_cache_distinguishes_code(ser):
    cache = FunctionCache(ser)
    a = cache.get(ser.serialize_function(double))
    b = cache.get(ser.serialize_function(greet))
    assert a is not b
    assert b("x") == "hello x!"
    assert cache.hits == 0


def test_function_cache_evicts_beyond_size(ser):
    cache = FunctionCache(ser, size=1)
    ca, cb = ser.serialize_function(double), ser.serialize_function(greet)
    a1 = cache.get(ca)
    cache.get(cb)
    a2 = cache.get(ca)
    assert cache.hits == 0
    assert a1 is not a2


@pytest.mark.parametrize("nbufs", [0, 2])
def test_function_cache_rejects_wrong_buffer_count(ser, nbufs):
    buf = ser.serialize(double)
    with pytest.raises(SerializationError, match="buffers"):
        FunctionCache(ser).get(pack_buffers([buf] * nbufs))


# ------------------------------------------------------ payload / function
def test_serialize_payload_packs_two(ser):
    payload = ser.serialize_payload([1, "a"], {"k": 2})
    bufs = unpack_buffers(payload)
    assert len(bufs) == 2
    assert ser.deserialize(bufs[0]) == (1, "a")  # args become a tuple
    assert ser.deserialize(bufs[1]) == {"k": 2}


def test_serialize_function_packs_one(ser):
    code = ser.serialize_function(double)
    bufs = unpack_buffers(code)
    assert len(bufs) == 1
    assert ser.deserialize(bufs[0])(5) == 10


def test_endpoint_unpacks_function_plus_payload_as_three(ser):
    packed = ser.serialize_function(greet) + ser.serialize_payload(("ann",), {"punctuation": "."})
    fn, args, kwargs = ser.unpack_and_deserialize(packed)
    assert fn(*args, **kwargs) == "hello ann."
