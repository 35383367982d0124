"""The binary path, SDK side (funcx/sdk/blobs.py): which argument items go
as raw frames, how a submit body numbers them, and that the rest of the SDK
(request splitting, JSON-only transports) sees their size."""
from __future__ import annotations

import numpy as np
import pytest

from funcx.sdk.blobs import BlobPayload, blob_bytes, inline, serialize_payload, submit_body
from funcx.sdk.limits import chunks
from funcx.serialize import FuncXSerializer, binary, frames
from funcx.serialize.buffers import unpack_buffers
from funcx.serialize.strategies import JSONData

BIG = np.arange(40_000, dtype=np.float64)  # 320 kB: past FUNCX_BLOB_MIN_BYTES (64 KiB)


def test_small_arguments_are_serialized_exactly_as_before():
    ser = FuncXSerializer()
    for args, kwargs in [((), {}), ((1, "x"), {"k": [1, 2]}), ((np.arange(10),), {})]:
        got = serialize_payload(ser, args, kwargs)
        assert type(got) is str and got == ser.serialize_payload(args, kwargs)


def test_a_large_argument_item_becomes_a_frame_never_text():
    got = serialize_payload(FuncXSerializer(), (BIG, 3), {"scale": 2})
    assert isinstance(got, BlobPayload) and len(got.blobs) == 1
    args_item, kwargs_item = unpack_buffers(got)
    assert args_item == "bb\n0"  # a reference in the payload, the bytes beside it
    assert kwargs_item == FuncXSerializer().serialize({"scale": 2})  # small: text as before
    raw = got.blobs[0]
    assert raw.startswith(b"00\n") and BIG.tobytes() in raw  # the array's bytes, raw
    value = binary.loads(raw)
    assert np.array_equal(value[0], BIG) and value[1] == 3
    assert blob_bytes(got) == binary.size(raw)


def test_a_large_kwargs_item_and_objects_only_dill_can_take():
    def local(x):  # not importable on the endpoint: dill carries it by value
        return x

    got = serialize_payload(FuncXSerializer(), (), {"data": BIG, "f": local})
    assert isinstance(got, BlobPayload)
    assert unpack_buffers(got)[1] == "bb\n0"
    value = binary.loads(got.blobs[0])
    assert np.array_equal(value["data"], BIG) and value["f"](5) == 5


def test_another_data_strategy_keeps_the_text_path():
    ser = FuncXSerializer(data_strategy=JSONData())
    got = serialize_payload(ser, (list(range(100_000)),), {})
    assert type(got) is str and got == ser.serialize_payload((list(range(100_000)),), {})


def test_a_submit_body_numbers_frames_across_tasks_one_frame_per_reference():
    a = serialize_payload(FuncXSerializer(), (BIG,), {})
    b = serialize_payload(FuncXSerializer(), (BIG,), {"more": BIG * 2})
    plain = FuncXSerializer().serialize_payload((1,), {})
    parts, ctype = submit_body({"tasks": {"f1": [a, plain], "f2": [b]}, "task_group_id": "tg"})
    assert ctype == frames.MEDIA_TYPE
    assert any(part is a.blobs[0] for part in parts)  # sent as it is, not copied into a body
    header, got = frames.decode(b"".join(parts))
    assert b"".join(parts) == frames.encode(header, [bytes(f) for f in got])  # one format
    assert header["task_group_id"] == "tg"
    assert header["tasks"]["f1"][1] == plain
    refs = [it for p in (*header["tasks"]["f1"], *header["tasks"]["f2"])
            for it in unpack_buffers(p) if binary.is_ref(it)]
    assert refs == ["bb\n0", "bb\n1", "bb\n2"]  # the same value in two tasks: two frames
    assert [bytes(f) for f in got] == [a.blobs[0], *b.blobs]


def test_a_body_without_blobs_stays_json():
    assert submit_body({"tasks": {"f": [FuncXSerializer().serialize_payload((1,), {})]}}) is None


def test_requests_are_split_by_the_blob_bytes_too():
    big = [("f", serialize_payload(FuncXSerializer(), (BIG,), {})) for _ in range(3)]
    limit = int(blob_bytes(big[0][1]) * 1.5)
    assert list(chunks(big, 100, limit, False)) == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(Exception, match="bytes serialized"):
        list(chunks(big, 100, limit // 2, True))


def test_a_json_only_transport_gets_the_blobs_inline_as_text():
    got = serialize_payload(FuncXSerializer(), (BIG,), {})
    text = inline(got)
    assert type(text) is str and not any(binary.is_ref(it) for it in unpack_buffers(text))
    args = FuncXSerializer().deserialize(unpack_buffers(text)[0])
    assert np.array_equal(args[0], BIG)
