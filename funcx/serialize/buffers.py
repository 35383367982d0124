"""Packed buffers: ``<length>\\n<data>`` for each buffer, concatenated (the
length counted in characters; API.md)."""
from __future__ import annotations

from funcx.errors import SerializationError


def pack_buffers(buffers: list[str]) -> str:
    """``<len>\\n<data>`` for each buffer, concatenated (len counted in characters)."""
    return "".join(f"{len(b)}\n{b}" for b in buffers)


def unpack_buffers(packed: str) -> list[str]:
    """The buffers of ``packed`` (``SerializationError`` if it is malformed)."""
    out, pos, n = [], 0, len(packed)
    while pos < n:
        nl = packed.find("\n", pos)
        if nl < 0:
            raise SerializationError("malformed packed buffer: missing length line")
        try:
            length = int(packed[pos:nl])
        except ValueError as e:
            raise SerializationError(f"malformed packed buffer length {packed[pos:nl][:20]!r}") from e
        start, end = nl + 1, nl + 1 + length
        if length < 0 or end > n:
            raise SerializationError("malformed packed buffer: truncated")
        out.append(packed[start:end])
        pos = end
    return out
