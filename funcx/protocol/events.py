"""A task group's completion events as the service answers them, defined once
for the service (backend/routes/taskgroups.py) and the SDK
(funcx/sdk/event_stream.py): one answer (:class:`EventsAnswer`, JSON), and
the streamed form, server-sent events: a ``data:`` message per answer, comment
lines for the stream's opening and its heartbeats (README "How results reach
the SDK")."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

#: the media type of a streamed events answer
STREAM_TYPE = "text/event-stream"
#: a stream's first bytes (its headers go out with them)
OPENED = b": open\n\n"
#: sent after each quiet slice: the stream is alive (and a gone client is noticed)
HEARTBEAT = b": idle\n\n"


class EventsAnswer(msgspec.Struct):
    """One answer: terminal task documents after a cursor, and the cursor after them."""

    last_id: str
    tasks: list[dict[str, Any]]
    taskgroup_id: str = ""


def data_message(answer: dict[str, Any]) -> bytes:
    """One answer as a server-sent message (JSON has no raw newline in it)."""
    return b"data: " + msgspec.json.encode(answer) + b"\n\n"


def decode(data: bytes) -> EventsAnswer:
    """One answer, checked; msgspec.ValidationError / DecodeError if it is not one."""
    return msgspec.json.decode(data, type=EventsAnswer)


def messages(chunks: Iterable[bytes]) -> Iterator[bytes | None]:
    """The ``data`` of each server-sent message in ``chunks`` (None for one
    with no data: the opening or a heartbeat), however the bytes were split."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while True:
            end = buf.find(b"\n\n")
            if end < 0:
                break
            block, buf = buf[:end], buf[end + 2:]
            data = [line[5:].lstrip(b" ") for line in block.split(b"\n")
                    if line.startswith(b"data:")]
            yield b"\n".join(data) if data else None
