"""The binary submit body (``application/vnd.funcx.frames``): a JSON header
and raw frames, so large task inputs cross HTTP as bytes, not base64 in JSON.

    FXF1\\n<header length>\\n<header JSON><frame count>\\n
    (<frame length>\\n<frame bytes>)*

The header is the JSON body of ``POST /v3/endpoints/<id>/submit``; a payload
item ``bb\\n<k>`` in it refers to frame ``k`` (0-based), a binary item
(:mod:`funcx.serialize.binary`).  Lengths are decimal byte counts.  The
decoder hands out memoryviews of the body (no copies) and raises
:class:`FramesError` naming what is wrong; nothing else.
"""
from __future__ import annotations

import json
from typing import Any

MEDIA_TYPE = "application/vnd.funcx.frames"
MAGIC = b"FXF1\n"
#: the most frames one body may carry
MAX_FRAMES = 100_000
_MAX_DIGITS = 12


class FramesError(ValueError):
    """A frames body that does not follow the format."""


def encode(header: dict[str, Any], frames: list[bytes]) -> bytes:
    """The body for ``header`` and ``frames`` (one copy of each frame)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    parts: list[bytes] = [MAGIC, b"%d\n" % len(head), head, b"%d\n" % len(frames)]
    for f in frames:
        parts.append(b"%d\n" % len(f))
        parts.append(f)
    return b"".join(parts)


def _number(view: memoryview, pos: int, what: str) -> tuple[int, int]:
    end = min(len(view), pos + _MAX_DIGITS + 1)
    chunk = bytes(view[pos:end])
    nl = chunk.find(b"\n")
    if nl <= 0 or not chunk[:nl].isdigit():
        raise FramesError(f"{what}: expected a decimal length and a newline at byte {pos}")
    return int(chunk[:nl]), pos + nl + 1


def decode(body: bytes | memoryview) -> tuple[dict[str, Any], list[memoryview]]:
    """The header and the frames of ``body``."""
    view = memoryview(body)
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise FramesError(f"not a {MEDIA_TYPE} body (it must start with {MAGIC!r})")
    hlen, pos = _number(view, len(MAGIC), "header length")
    if pos + hlen > len(view):
        raise FramesError("the header is truncated")
    try:
        header = json.loads(bytes(view[pos:pos + hlen]))
    except (ValueError, RecursionError) as e:
        raise FramesError(f"the header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise FramesError("the header must be a JSON object")
    count, pos = _number(view, pos + hlen, "frame count")
    if count > MAX_FRAMES:
        raise FramesError(f"{count} frames; at most {MAX_FRAMES}")
    frames = []
    for i in range(count):
        n, pos = _number(view, pos, f"frame {i} length")
        if pos + n > len(view):
            raise FramesError(f"frame {i} is truncated")
        frames.append(view[pos:pos + n])
        pos += n
    if pos != len(view):
        raise FramesError(f"{len(view) - pos} bytes after the last frame")
    return header, frames
