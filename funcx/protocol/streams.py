"""Redis stream entries that carry many tasks or results at once (DESIGN
decision 5: batch every hop).

* Task stream: one entry per submit request and endpoint,
  ``{"kind": "tasks", "meta": <JSON list>, "payloads": <packed buffers>}``.
* Results stream: one entry per batch the agent writes,
  ``{"kind": "results", "meta": <JSON list>, "data": <packed>, "exc": <packed>}``,
  or a status update ``{"kind": "status", ...}``.

Single-task / single-result entries (``Task.to_fields``, ``Result.to_fields``)
are still read.  Payloads are packed as ``<len>\\n<data>`` so they are never
escaped or copied through JSON.
"""
from __future__ import annotations

import json

from funcx.protocol.messages import (ProtocolError, Result, StatusUpdate, Task,
                                     parse_result_entry)
from funcx.errors import SerializationError
from funcx.serialize.facade import pack_buffers, unpack_buffers

TASK_META = ("task_id", "function_id", "task_group_id", "container_id", "resource_specification")


def encode_task_batch(tasks: list[Task]) -> dict[str, str]:
    meta = [[t.task_id, t.function_id, t.task_group_id, t.container_id,
             t.resource_specification or None] for t in tasks]
    return {"kind": "tasks", "meta": json.dumps(meta, separators=(",", ":")),
            "payloads": pack_buffers([t.payload for t in tasks])}


def decode_task_entry(fields: dict[str, str]) -> list[Task]:
    if fields.get("kind") != "tasks":
        return [Task.from_fields(fields)]
    try:
        meta = json.loads(fields["meta"])
        payloads = unpack_buffers(fields["payloads"])
    except (KeyError, ValueError, SerializationError) as e:
        raise ProtocolError(f"bad task batch entry: {e}") from e
    if len(meta) != len(payloads):
        raise ProtocolError("task batch: meta and payload counts differ")
    try:
        return [Task(task_id=m[0], function_id=m[1], task_group_id=m[2], container_id=m[3],
                     resource_specification=m[4] or {}, payload=p)
                for m, p in zip(meta, payloads)]
    except (IndexError, TypeError) as e:
        raise ProtocolError(f"bad task batch meta: {e}") from e


def encode_results(results: list[Result]) -> dict[str, str]:
    meta = [[r.task_id, r.status, r.task_group_id, r.completion_t, r.details or None]
            for r in results]
    return {"kind": "results", "meta": json.dumps(meta, separators=(",", ":")),
            "data": pack_buffers([r.data for r in results]),
            "exc": pack_buffers([r.exc_data for r in results])}


def decode_result_entry(fields: dict[str, str]) -> list[Result | StatusUpdate]:
    if fields.get("kind") != "results":
        return [parse_result_entry(fields)]
    try:
        meta = json.loads(fields["meta"])
        data, exc = unpack_buffers(fields["data"]), unpack_buffers(fields["exc"])
    except (KeyError, ValueError, SerializationError) as e:
        raise ProtocolError(f"bad results entry: {e}") from e
    if not len(meta) == len(data) == len(exc):
        raise ProtocolError("results entry: counts differ")
    try:
        return [Result(task_id=m[0], status=m[1], task_group_id=m[2], completion_t=m[3],
                       details=m[4] or {}, data=d, exc_data=x)
                for m, d, x in zip(meta, data, exc)]
    except (IndexError, TypeError) as e:
        raise ProtocolError(f"bad results meta: {e}") from e
