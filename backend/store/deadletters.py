"""The dead-letter stream: entries a boundary refused, with their origin and
reason, kept for an admin to read (``funcx admin dead-letters list``) and clear.

A refused entry never stops the reader that refused it (DESIGN decision 8).
What is kept is bounded: the stream is capped, and an entry's fields are kept
as a short preview without payloads (data, exceptions, code, arguments).
"""
from __future__ import annotations

import json
import time
from typing import Any

import redis

from funcx.defaults import setting
from funcx.protocol import keys

PREVIEW_CHARS = 1024
#: fields whose values are payloads: kept only as their length
PAYLOAD_FIELDS = frozenset({"data", "exc", "exc_data", "payload", "payloads", "function_code"})


def preview(fields: Any) -> str:
    """A bounded, payload-free JSON preview of a refused entry's fields."""
    if isinstance(fields, dict):
        shown = {}
        for k, v in list(fields.items())[:32]:
            name = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            shown[name[:64]] = (f"<{len(v)} chars>" if name in PAYLOAD_FIELDS
                                else str(v)[:256])
        text = json.dumps(shown)
    else:
        text = repr(fields)
    return text[:PREVIEW_CHARS]


def add(r: redis.Redis | redis.client.Pipeline, origin: str, reason: str, *, stream: str = "",
        entry_id: str = "", fields: Any = None) -> None:
    """Record one refused entry (or task) from ``origin`` (e.g. ``endpoint:<id>``)."""
    r.xadd(keys.DEAD_LETTERS, {
        "origin": origin[:128], "stream": stream[:256], "entry_id": str(entry_id)[:64],
        "reason": reason[:1024], "t": repr(time.time()),
        "fields": preview(fields) if fields is not None else "",
    }, maxlen=int(setting("DEAD_LETTERS_MAX")), approximate=True)


def list_recent(r: redis.Redis, count: int = 100) -> list[dict]:
    """The newest ``count`` dead letters, newest first, each with its ``id``."""
    return [{"id": i, **f} for i, f in r.xrevrange(keys.DEAD_LETTERS, count=count)]


def count(r: redis.Redis) -> int:
    return int(r.xlen(keys.DEAD_LETTERS))


def clear(r: redis.Redis) -> int:
    """Remove every dead letter; return how many there were."""
    with r.pipeline(transaction=True) as p:
        p.xlen(keys.DEAD_LETTERS)
        p.delete(keys.DEAD_LETTERS)
        n, _ = p.execute()
    return int(n)
