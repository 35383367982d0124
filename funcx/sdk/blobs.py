"""The binary path on the SDK side (issue 20; README "Large inputs and
results (the binary path)").

A task argument item (the packed ``args`` tuple or ``kwargs`` dict) whose
binary form (funcx.serialize.binary) is at least ``FUNCX_BLOB_MIN_BYTES`` is
serialized straight to bytes — its base64 text is never made — and travels as
a frame of an ``application/vnd.funcx.frames`` submit body, a reference item
``bb\\n<k>`` standing in the payload in its place.  Results come back the
same way: the executor's long poll asks for references (``blobs=1``) and
fetches each large result's bytes from ``GET /v3/tasks/<id>/result``.
"""
from __future__ import annotations

import json
from typing import Any

from funcx.serialize import FuncXSerializer, binary, frames
from funcx.serialize.buffers import pack_buffers, unpack_buffers

#: containers an argument-size estimate looks into, and how many items at most
binary.SCAN_BUDGET = 256


class BlobPayload(str):
    """A packed task payload whose reference items ``bb\\n<k>`` stand for
    ``blobs[k]`` (binary items); a ``str`` everywhere else in the SDK."""

    blobs: list[bytes]

    def __new__(cls, text: str, blobs: list[bytes]) -> BlobPayload:
        obj = super().__new__(cls, text)
        obj.blobs = blobs
        return obj


def blob_bytes(payload: str) -> int:
    """Bytes a payload's blobs carry (0 for a plain payload)."""
    return sum(binary.size(b) for b in getattr(payload, "blobs", ()))


_NO_BUFFER = frozenset({type(None), bool, int, float, complex})
_SIZED = frozenset({bytes, bytearray, str})
_CONTAINERS = frozenset({list, tuple, set, frozenset})


def _estimate(obj: Any, budget: list[int]) -> int:
    """A cheap lower bound of ``obj``'s pickled size: array and buffer bytes,
    looked for in at most ``binary.SCAN_BUDGET`` objects (0 for a task of scalars)."""
    t = type(obj)
    if t in _NO_BUFFER:
        return 0
    budget[0] -= 1
    if budget[0] < 0:
        return 0
    if t in _SIZED:
        return len(obj)
    if t in _CONTAINERS:
        return sum(_estimate(x, budget) for x in obj)
    if t is dict:
        return sum(_estimate(v, budget) for v in obj.values())
    if t is memoryview:
        return obj.nbytes
    nbytes = getattr(obj, "nbytes", None)  # numpy arrays, pandas objects
    return nbytes if isinstance(nbytes, int) else 0


def serialize_payload(serializer: FuncXSerializer, args: tuple, kwargs: dict) -> str:
    """The task payload of ``(args, kwargs)``: as ``serializer`` makes it,
    unless an item is large (at least ``FUNCX_BLOB_MIN_BYTES`` as bytes) and
    the data strategy is the default ``00``: then a :class:`BlobPayload`."""
    budget, estimate = [binary.SCAN_BUDGET], 0
    for value in (*args, *kwargs.values()):
        if type(value) not in _NO_BUFFER:  # (a task of scalars: one type test each)
            estimate += _estimate(value, budget)
    if not estimate or serializer.data_order[0] != "00":  # no buffers: no setting to read
        return serializer.serialize_payload(args, kwargs)
    minimum = binary.blob_min_bytes()
    if estimate < minimum // 2:
        return serializer.serialize_payload(args, kwargs)
    items: list[str] = []
    blobs: list[bytes] = []
    for obj in (tuple(args), dict(kwargs)):
        raw = binary.dumps(obj)
        if binary.size(raw) >= minimum:
            items.append(binary.ref(str(len(blobs))))
            blobs.append(raw)
        else:  # as it would have gone without the binary path
            items.append(serializer.serialize(obj))
    if not blobs:
        return pack_buffers(items)
    return BlobPayload(pack_buffers(items), blobs)


def frames_parts(header: dict[str, Any], got: list[bytes]) -> list[bytes]:
    """:func:`funcx.serialize.frames.encode` as a list of parts whose
    concatenation is that body: the frames themselves are parts, so a large
    one is sent as it is, never copied into one body."""
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [frames.MAGIC + b"%d\n" % len(head) + head + b"%d\n" % len(got)]
    for f in got:
        parts += [b"%d\n" % len(f), f]
    return parts


def submit_body(body: dict[str, Any]) -> tuple[list[bytes], str] | None:
    """``(request body in parts, content type)`` for a submit whose payloads
    hold blobs (their references renumbered to the frames of the whole
    body); None when none does (the body goes as JSON)."""
    tasks: dict[str, list[str]] = body["tasks"]
    if not any(getattr(p, "blobs", None) for ps in tasks.values() for p in ps):
        return None
    out: list[bytes] = []
    renumbered: dict[str, list[str]] = {}
    for fid, payloads in tasks.items():
        row = renumbered[fid] = []
        for p in payloads:
            own = getattr(p, "blobs", None)
            if not own:
                row.append(str(p))
                continue
            base = len(out)
            out.extend(own)
            row.append(pack_buffers([
                binary.ref(str(base + int(binary.ref_name(it)))) if binary.is_ref(it) else it
                for it in unpack_buffers(p)]))
    return frames_parts({**body, "tasks": renumbered}, out), frames.MEDIA_TYPE


def inline(payload: str) -> str:
    """``payload`` with its blobs as inline text items (for a transport that
    sends JSON only)."""
    own = getattr(payload, "blobs", None)
    if not own:
        return payload
    return pack_buffers([binary.to_text(own[int(binary.ref_name(it))]) if binary.is_ref(it)
                         else it for it in unpack_buffers(payload)])


def is_blob_result(doc: dict) -> bool:
    """Whether a task document's result is a blob reference (``blobs=1``)."""
    result = doc.get("result")
    return str(doc.get("status", "")).lower() == "success" and isinstance(result, str) \
        and binary.is_ref(result)


def fetch_result(web: Any, task_id: str, serializer: FuncXSerializer) -> Any:
    """The value of a task's blob result, read as bytes from the service
    (retried through a brief outage, as every idempotent read)."""
    from funcx.defaults import setting

    raw = web.get(f"/v3/tasks/{task_id}/result", retry_s=float(setting("HTTP_RETRY_S")))
    if not isinstance(raw, (bytes, bytearray)):
        from funcx.errors import SerializationError

        raise SerializationError(f"the result of task {task_id} did not come back as bytes")
    return binary.loads(raw, serializer)
