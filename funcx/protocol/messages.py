"""Typed messages between service, endpoint agent, interchange, managers and
workers, defined once and shared by every side.

Two encodings are used:

* Redis stream entries (service <-> agent): flat ``{str: str}`` field maps,
  via ``to_fields`` / ``from_fields``.
* ZeroMQ multipart frames (agent <-> manager <-> worker): a first frame of
  ``VERSION`` byte + message kind, a JSON header, then raw binary frames, via
  :func:`pack` / :func:`unpack`.  Batches of tasks or results travel as one
  multipart message (DESIGN decision 5).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

VERSION = 1


class ProtocolError(ValueError):
    """A message that does not follow this module's schema."""


# --------------------------------------------------------------------------- tasks
@dataclass
class Task:
    """One task as the endpoint sees it."""

    task_id: str
    function_id: str
    payload: str
    task_group_id: str = ""
    function_code: str = ""  # filled in by the agent from its function cache
    container_id: str = ""
    resource_specification: dict = field(default_factory=dict)
    attempt: int = 0
    container_spec: dict = field(default_factory=dict)  # {"type", "location"}, from the agent  # how many times it was re-dispatched after a lost manager

    STREAM_FIELDS = ("task_id", "function_id", "payload", "task_group_id", "container_id")

    def to_fields(self) -> dict[str, str]:
        out = {k: getattr(self, k) for k in self.STREAM_FIELDS}
        if self.resource_specification:
            out["resource_specification"] = json.dumps(self.resource_specification)
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> "Task":
        try:
            spec = fields.get("resource_specification")
            return cls(
                task_id=fields["task_id"],
                function_id=fields["function_id"],
                payload=fields["payload"],
                task_group_id=fields.get("task_group_id", ""),
                container_id=fields.get("container_id", ""),
                resource_specification=json.loads(spec) if spec else {},
            )
        except (KeyError, json.JSONDecodeError) as e:
            raise ProtocolError(f"bad task entry: {e}") from e

    def meta(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "function_id": self.function_id,
            "task_group_id": self.task_group_id,
            "container_id": self.container_id,
            "resource_specification": self.resource_specification,
            "attempt": self.attempt,
            "container_spec": self.container_spec,
        }


# ------------------------------------------------------------------------ results
@dataclass
class Result:
    """The terminal outcome of one task, made by a worker (or by the endpoint on
    the worker's behalf when it died).  ``data`` is the serialized result on
    success and the remote traceback text on failure; ``exc_data`` is the
    serialized exception object, when it could be serialized."""

    task_id: str
    status: str  # "success" | "failed"
    data: str = ""
    exc_data: str = ""
    task_group_id: str = ""
    completion_t: str = ""
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.completion_t:
            self.completion_t = repr(time.time())

    def to_fields(self) -> dict[str, str]:
        out = {
            "kind": "result",
            "task_id": self.task_id,
            "status": self.status,
            "data": self.data,
            "task_group_id": self.task_group_id,
            "completion_t": self.completion_t,
        }
        if self.exc_data:
            out["exc_data"] = self.exc_data
        if self.details:
            out["details"] = json.dumps(self.details)
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> "Result":
        try:
            d = fields.get("details")
            return cls(
                task_id=fields["task_id"],
                status=fields["status"],
                data=fields.get("data", ""),
                exc_data=fields.get("exc_data", ""),
                task_group_id=fields.get("task_group_id", ""),
                completion_t=fields.get("completion_t", ""),
                details=json.loads(d) if d else {},
            )
        except (KeyError, json.JSONDecodeError) as e:
            raise ProtocolError(f"bad result entry: {e}") from e

    def meta(self) -> dict[str, Any]:
        m = asdict(self)
        del m["data"], m["exc_data"]
        return m


@dataclass
class StatusUpdate:
    """A non-terminal state change for several tasks at once (e.g. running)."""

    status: str
    task_ids: list[str]

    def to_fields(self) -> dict[str, str]:
        return {"kind": "status", "status": self.status, "task_ids": json.dumps(self.task_ids)}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> "StatusUpdate":
        try:
            return cls(status=fields["status"], task_ids=json.loads(fields["task_ids"]))
        except (KeyError, json.JSONDecodeError) as e:
            raise ProtocolError(f"bad status entry: {e}") from e


def parse_result_entry(fields: dict[str, str]) -> Result | StatusUpdate:
    kind = fields.get("kind", "result")
    if kind == "status":
        return StatusUpdate.from_fields(fields)
    if kind == "result":
        return Result.from_fields(fields)
    raise ProtocolError(f"unknown result-stream entry kind {kind!r}")


# ------------------------------------------------------------------ ZeroMQ frames
class Kind:
    """Message kinds on the interchange <-> manager <-> worker sockets."""

    REGISTER = b"REGISTER"  # manager -> interchange: who I am, how many workers
    CAPACITY = b"CAPACITY"  # manager -> interchange: I can take N more tasks
    TASKS = b"TASKS"  # interchange -> manager, manager -> worker
    RESULTS = b"RESULTS"  # manager -> interchange, worker -> manager
    RUNNING = b"RUNNING"  # manager -> interchange: these tasks started
    HEARTBEAT = b"HEARTBEAT"  # both ways
    SHUTDOWN = b"SHUTDOWN"  # interchange -> manager
    READY = b"READY"  # worker -> manager: idle


@dataclass
class Message:
    kind: bytes
    header: Any
    blobs: list[bytes]


def pack(kind: bytes, header: Any = None, blobs: Iterable[bytes] = ()) -> list[bytes]:
    return [bytes([VERSION]) + kind, json.dumps(header).encode(), *blobs]


def unpack(frames: list[bytes]) -> Message:
    if len(frames) < 2 or not frames[0]:
        raise ProtocolError("short message")
    if frames[0][0] != VERSION:
        raise ProtocolError(f"protocol version {frames[0][0]} != {VERSION}")
    try:
        header = json.loads(frames[1])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(f"bad header: {e}") from e
    return Message(frames[0][1:], header, list(frames[2:]))


def pack_tasks(tasks: list[Task]) -> list[bytes]:
    blobs: list[bytes] = []
    for t in tasks:
        blobs.append(t.function_code.encode())
        blobs.append(t.payload.encode())
    return pack(Kind.TASKS, [t.meta() for t in tasks], blobs)


def unpack_tasks(msg: Message) -> list[Task]:
    if len(msg.blobs) != 2 * len(msg.header):
        raise ProtocolError("task batch frame count mismatch")
    out = []
    for i, m in enumerate(msg.header):
        t = Task(
            task_id=m["task_id"],
            function_id=m["function_id"],
            payload=msg.blobs[2 * i + 1].decode(),
            task_group_id=m.get("task_group_id", ""),
            function_code=msg.blobs[2 * i].decode(),
            container_id=m.get("container_id", ""),
            resource_specification=m.get("resource_specification") or {},
            attempt=m.get("attempt", 0),
            container_spec=m.get("container_spec") or {},
        )
        out.append(t)
    return out


def pack_results(results: list[Result]) -> list[bytes]:
    blobs: list[bytes] = []
    for r in results:
        blobs.append(r.data.encode())
        blobs.append(r.exc_data.encode())
    return pack(Kind.RESULTS, [r.meta() for r in results], blobs)


def unpack_results(msg: Message) -> list[Result]:
    if len(msg.blobs) != 2 * len(msg.header):
        raise ProtocolError("result batch frame count mismatch")
    return [
        Result(data=msg.blobs[2 * i].decode(), exc_data=msg.blobs[2 * i + 1].decode(), **m)
        for i, m in enumerate(msg.header)
    ]
