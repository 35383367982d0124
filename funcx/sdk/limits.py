"""The documented "5 MB per request" (funcX 1.x SDK docs, "Client
Throttling"), measured on the serialized data the user sent: the decoded
bytes of each payload's buffers, not their base64 and JSON encoding."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from funcx.errors import MaxRequestSizeExceeded, SerializationError
from funcx.sdk.blobs import blob_bytes
from funcx.serialize.facade import unpack_buffers

#: a payload this long or shorter is counted at its length (an upper bound of the
#: data it carries) when submits are split under the request size limit
SMALL_PAYLOAD = 4096
#: serializer identifiers whose body is base64 (see funcx.serialize.strategies)
BASE64_IDENTIFIERS = frozenset({"00", "01", "03", "04"})
#: identifiers whose body is itself packed buffers
PACKED_IDENTIFIERS = frozenset({"12", "13"})


def _buffer_bytes(buf: str) -> int:
    ident, body = buf[:2], buf[3:] if len(buf) > 2 and buf[2] == "\n" else buf
    if ident in BASE64_IDENTIFIERS:
        stripped = body.rstrip("\n")
        pad = len(stripped) - len(stripped.rstrip("="))
        return (len(body) - body.count("\n")) * 3 // 4 - pad
    if ident in PACKED_IDENTIFIERS:
        return payload_bytes(body)
    return len(body.encode())


def serialized_bytes(item: str) -> int:
    """Bytes of data one serialized item (``<identifier>\\n<data>``, e.g. a
    result) carries: its base64 body as decoded.  Other text counts as is."""
    return _buffer_bytes(item)


def payload_bytes(payload: str) -> int:
    """Bytes of the serialized data a task payload (or function code) carries:
    each packed buffer's base64 body as decoded, so the documented "5 MB per
    request" is measured on what the user sent, not on its base64 and JSON
    encoding (a third larger, and more)."""
    try:
        buffers = unpack_buffers(payload)
    except SerializationError:
        return len(payload.encode())
    return sum(_buffer_bytes(b) for b in buffers)


def check_request_size(decoded: int, encoded: int, limit: int, what: str) -> None:
    """Raise :class:`MaxRequestSizeExceeded` if ``decoded`` bytes of serialized
    data are over ``limit``; the message names the limit's setting and both sizes."""
    if decoded > limit:
        raise MaxRequestSizeExceeded(
            f"{what} is {decoded} bytes serialized ({encoded} bytes as sent: base64 in "
            f"JSON, or raw frames for a large one), over the client limit of {limit} bytes "
            "per request "
            "(FuncXClient.throttle.max_request_size, the documented 5 MB, enforced by this "
            "SDK before sending; nothing was sent); send less data per task, raise that "
            "limit, or set throttling_enabled = False (the service then applies its own "
            "limit per task input, FUNCX_MAX_PAYLOAD_BYTES on the service host, 10 MiB "
            "by default)")


def chunks(tasks: Sequence[tuple[str, str]], size: int, limit: int | None,
           check: bool) -> Iterable[tuple[int, int]]:
    """``(start, stop)`` of each submit request over ``(function_id, payload)``
    pairs: at most ``size`` tasks and, given a ``limit``, at most ``limit``
    bytes of serialized input; a single task over it raises when ``check``."""
    start, used = 0, 0
    for i, (_fid, payload) in enumerate(tasks):
        n = 0
        if limit is not None:  # small payloads: their length bounds their data (cheap)
            n = len(payload)
            if n > SMALL_PAYLOAD:
                n = payload_bytes(payload)
            n += blob_bytes(payload)  # a large input's raw frames (funcx.sdk.blobs)
            if check:
                check_request_size(n, len(payload) + blob_bytes(payload), limit,
                                   f"the input of task {i}")
        if i > start and (i - start >= size or (limit is not None and used + n > limit)):
            yield start, i
            start, used = i, 0
        used += n
    if start < len(tasks):
        yield start, len(tasks)
