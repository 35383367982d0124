"""Redis stream entries that carry many tasks or results at once (DESIGN
decision 5: batch every hop), decoded through their schemas (decision 8).

* Task stream: one entry per submit request and endpoint,
  ``{"kind": "tasks", "v", "meta": <JSON list of TaskRow>, "payloads": <packed>}``.
* Results stream: one entry per batch the agent writes,
  ``{"kind": "results", "v", "meta": <JSON list of ResultMeta>, "data": <packed>,
  "exc": <packed>[, "stdout": <packed>, "stderr": <packed>]}`` (the output fields
  only when a task of the batch wrote any), or a status update
  ``{"kind": "status", ...}``.

Single-task / single-result entries (``Task.to_fields``, ``Result.to_fields``)
are still read.  Payloads are packed as ``<len>\\n<data>`` so they are never
escaped or copied through JSON.  Every decoder raises :class:`ProtocolError`
and nothing else on bad input.
"""
from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct

from funcx.errors import SerializationError
from funcx.protocol.messages import (
    VERSION,
    Id,
    OptId,
    ProtocolError,
    Result,
    ResultMeta,
    SerializerPaths,
    StatusUpdate,
    Task,
    parse_result_entry,
    resource_specification,
)
from funcx.protocol.output_limits import STREAMS
from funcx.protocol.retry import RetryPolicyError, retry_policy
from funcx.serialize.facade import pack_buffers, unpack_buffers


class TaskRow(Struct, array_like=True):
    """One task's metadata in a task-stream entry."""

    task_id: Id
    function_id: Id
    task_group_id: OptId = ""
    container_id: OptId = ""
    resource_specification: dict[str, Any] | None = None
    result_serializers: SerializerPaths | None = None
    retry_policy: dict[str, Any] | None = None  #: funcx.protocol.retry (None: no retries)


_task_rows = msgspec.json.Decoder(list[TaskRow])
_result_rows = msgspec.json.Decoder(list[ResultMeta])
_encoder = msgspec.json.Encoder()


def _check_version(fields: dict[str, str]) -> None:
    v = fields.get("v", str(VERSION))
    if v != str(VERSION):
        raise ProtocolError(f"entry version {str(v)[:8]!r} != {VERSION}")


def _unpack(packed: Any, what: str) -> list[str]:
    if not isinstance(packed, str):
        raise ProtocolError(f"bad {what}: missing or not text")
    try:
        return unpack_buffers(packed)
    except (ValueError, SerializationError) as e:
        raise ProtocolError(f"bad {what}: {e}") from None


def encode_task_batch(tasks: list[Task]) -> dict[str, str]:
    meta = [TaskRow(t.task_id, t.function_id, t.task_group_id, t.container_id,
                    t.resource_specification or None, t.result_serializers or None,
                    t.retry_policy or None)
            for t in tasks]
    out = {"kind": "tasks", "v": str(VERSION), "meta": _encoder.encode(meta).decode(),
           "payloads": pack_buffers([t.payload for t in tasks])}
    # one submit, one submitter: the identity and user config are the entry's (issue 19)
    if tasks and tasks[0].identity:
        out["identity"] = _encoder.encode(tasks[0].identity).decode()
    if tasks and tasks[0].user_endpoint_config:
        out["user_endpoint_config"] = _encoder.encode(tasks[0].user_endpoint_config).decode()
    return out


_identity = msgspec.json.Decoder(dict[str, str])
_user_config = msgspec.json.Decoder(dict[str, Any])


def _entry_json(fields: dict[str, str], name: str, decoder: msgspec.json.Decoder) -> dict:
    raw = fields.get(name)
    if not raw:
        return {}
    try:
        return decoder.decode(raw)
    except (RecursionError, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"bad task batch {name}: {e}") from None


def decode_task_entry(fields: dict[str, str]) -> list[Task]:
    if fields.get("kind") != "tasks":
        return [Task.from_fields(fields)]
    _check_version(fields)
    try:
        meta = _task_rows.decode(fields.get("meta", ""))
    except (RecursionError, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"bad task batch meta: {e}") from None
    payloads = _unpack(fields.get("payloads"), "task batch payloads")
    if len(meta) != len(payloads):
        raise ProtocolError("task batch: meta and payload counts differ")
    identity = _entry_json(fields, "identity", _identity)
    user_config = _entry_json(fields, "user_endpoint_config", _user_config)
    return [Task(task_id=m.task_id, function_id=m.function_id, task_group_id=m.task_group_id,
                 container_id=m.container_id,
                 resource_specification=resource_specification(m.resource_specification),
                 result_serializers=m.result_serializers or [],
                 retry_policy=_policy(m.retry_policy), payload=p,
                 identity=dict(identity), user_endpoint_config=dict(user_config))
            for m, p in zip(meta, payloads)]


def _policy(raw: dict[str, Any] | None) -> dict[str, Any]:
    try:
        return retry_policy(raw)
    except RetryPolicyError as e:
        raise ProtocolError(str(e)) from None


def encode_results(results: list[Result]) -> dict[str, str]:
    """One results-stream entry; ``stdout`` / ``stderr`` (packed, one buffer per
    result) only when some task of the batch wrote output."""
    meta = [r.meta() for r in results]
    out = {"kind": "results", "v": str(VERSION), "meta": _encoder.encode(meta).decode(),
           "data": pack_buffers([r.data for r in results]),
           "exc": pack_buffers([r.exc_data for r in results])}
    if any(r.stdout or r.stderr for r in results):
        for stream in STREAMS:  # the results-entry fields of the captured output (optional)
            out[stream] = pack_buffers([getattr(r, stream) for r in results])
    return out


def _outputs(fields: dict[str, str], n: int) -> dict[str, list[str]]:
    """Each output field's texts, one per result (all empty where absent)."""
    out: dict[str, list[str]] = {}
    for stream in STREAMS:
        if stream not in fields:
            out[stream] = [""] * n
            continue
        out[stream] = _unpack(fields[stream], f"results {stream}")
        if len(out[stream]) != n:
            raise ProtocolError(f"results entry: {stream} count differs")
    return out


def decode_result_entry(fields: dict[str, str]) -> list[Result | StatusUpdate]:
    """The results and status updates of one results-stream entry."""
    if not isinstance(fields, dict):
        raise ProtocolError("bad results entry: not a field map")
    if fields.get("kind") != "results":
        _check_version(fields)
        return [parse_result_entry(fields)]
    _check_version(fields)
    try:
        meta = _result_rows.decode(fields.get("meta", ""))
    except (RecursionError, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise ProtocolError(f"bad results meta: {e}") from None
    data = _unpack(fields.get("data"), "results data")
    exc = _unpack(fields.get("exc"), "results exceptions")
    if not len(meta) == len(data) == len(exc):
        raise ProtocolError("results entry: counts differ")
    outputs = _outputs(fields, len(meta))
    return [Result(task_id=m.task_id, status=m.status, task_group_id=m.task_group_id,
                   completion_t=m.completion_t, details=m.details or {}, data=d, exc_data=x,
                   stdout=o, stderr=e)
            for m, d, x, o, e in zip(meta, data, exc, outputs["stdout"], outputs["stderr"])]
