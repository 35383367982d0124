"""Typed messages between service, endpoint agent, interchange, managers and
workers: each defined once here, shared by every side, and decoded through
its schema wherever it crosses a trust boundary (DESIGN decision 8).

Two encodings are used:

* Redis stream entries (service <-> agent): flat ``{str: str}`` field maps
  (see :mod:`funcx.protocol.streams` for the batched entries).
* ZeroMQ multipart frames (agent <-> manager <-> worker): a first frame of
  ``VERSION`` byte + message kind, a JSON header, then raw binary frames, via
  :func:`pack` / :func:`unpack`.  Batches of tasks or results travel as one
  multipart message (DESIGN decision 5).

The schemas are msgspec Structs: decoding validates types, bounds and
patterns in C on the hot path, and an error names the offending field
(``Expected `int`, got `str` - at `$[0].workers```).  Constructors do not
validate; only the decoders do, since only decoded input is untrusted.
A malformed message raises :class:`ProtocolError` and nothing else.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated, Any, Literal, cast

import msgspec
from msgspec import Meta, Struct, field

from funcx.protocol.hardware import NodeHardware
from funcx.protocol.output_limits import STREAMS

VERSION = 1

#: task, function, task-group and container ids as they cross a boundary
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
#: the same, where empty means "none"
OptId = Annotated[str, Meta(max_length=64, pattern=r"^[A-Za-z0-9._-]*$")]
#: an epoch as a string (``repr(time.time())``), as task documents carry it
EpochStr = Annotated[str, Meta(max_length=32, pattern=r"^[0-9]{1,12}(\.[0-9]{1,12})?$")]
#: the terminal statuses an endpoint may report ("cancelled" is the service's alone)
ResultStatus = Literal["success", "failed"]
#: the non-terminal statuses an endpoint may report
EndpointStatus = Literal["waiting-for-nodes", "waiting-for-launch", "running"]
Seconds = Annotated[float, Meta(gt=0, le=10 * 365 * 24 * 3600)]
Count = Annotated[int, Meta(ge=1, le=1_000_000)]
Name = Annotated[str, Meta(max_length=256)]
#: the most task ids a manager may say it holds when it registers
MAX_HELD = 100_000
#: the most blobs (large items in binary form, funcx.serialize.binary) one task's
#: payload or one result may carry as extra frames
MAX_BLOBS = 64
Blobs = Annotated[int, Meta(ge=0, le=MAX_BLOBS)]


class ProtocolError(ValueError):
    """A message that does not follow this module's schema."""


def _bad(what: str, e: Exception) -> ProtocolError:
    return ProtocolError(f"bad {what}: {e}")


# ----------------------------------------------------- resource specification
class ResourceSpecification(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a submitter may ask of an endpoint for one task.  Unknown fields are
    refused; the endpoint owner's limits bound the rest (checked at submit)."""

    walltime: Seconds | None = None  #: seconds before the task is killed
    num_nodes: Count | None = None  #: MPI: nodes for the task
    num_ranks: Count | None = None  #: MPI: total ranks
    ranks_per_node: Count | None = None  #: MPI: ranks on each node
    launcher_options: Annotated[str, Meta(max_length=1024)] | None = None


def resource_specification(raw: Any) -> dict[str, Any]:
    """``raw`` checked against :class:`ResourceSpecification`; the normalized
    dict (no unset fields), or :class:`ProtocolError` naming the field."""
    if raw is None:
        return {}
    try:
        spec = msgspec.to_builtins(msgspec.convert(raw, ResourceSpecification))
    except (msgspec.ValidationError, TypeError, RecursionError) as e:
        raise _bad("resource_specification", e) from None
    ranks, nodes, per_node = (spec.get(k) for k in ("num_ranks", "num_nodes", "ranks_per_node"))
    if ranks and per_node and ranks > (nodes or 1) * per_node:  # MPI: it could never start
        raise ProtocolError(f"bad resource_specification: num_ranks={ranks} does not fit "
                            f"num_nodes={nodes or 1} x ranks_per_node={per_node}")
    return spec


class EndpointLimits(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What an endpoint's owner allows any task to use (from its config).
    A submit asking for more is refused (400) before anything is queued."""

    max_walltime: Seconds | None = None  #: upper bound of a task's walltime
    mem_per_worker: Annotated[float, Meta(gt=0, le=1 << 20)] | None = None  #: GB per worker
    max_nodes: Count | None = None  #: MPI mode: the nodes of one block (a task's num_nodes bound)


def endpoint_limits(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        return msgspec.to_builtins(msgspec.convert(raw, EndpointLimits))
    except (msgspec.ValidationError, TypeError, RecursionError) as e:
        raise _bad("endpoint limits", e) from None


class NodesOverLimit(ProtocolError):
    """A task asks for more MPI nodes than a block of its endpoint has."""


def check_within_limits(spec: dict[str, Any], limits: dict[str, Any]) -> None:
    """Refuse (``ProtocolError`` naming the field) a specification above the owner's bounds."""
    nodes = limits.get("max_nodes")
    if nodes is not None and (spec.get("num_nodes") or 1) > nodes:
        raise NodesOverLimit(f"resource_specification.num_nodes {spec['num_nodes']} exceeds the "
                             f"{nodes} node{'s' if nodes != 1 else ''} of a block of this "
                             f"endpoint (nodes_per_block={nodes})")
    bound = limits.get("max_walltime")
    if bound is not None and spec.get("walltime") is not None and spec["walltime"] > bound:
        raise ProtocolError(f"resource_specification.walltime {spec['walltime']:g}s exceeds this "
                            f"endpoint's limit of {bound:g}s")


# --------------------------------------------------------------------------- tasks
#: a submit's ``result_serializers``: strategy import paths, in the order to try
#: (validated by name at submit: funcx.serialize.choice; never imported)
SerializerPaths = Annotated[
    list[Annotated[str, Meta(max_length=200, pattern=r"^[A-Za-z0-9_.]+$")]], Meta(max_length=16)]


class Task(Struct):
    """One task as the endpoint sees it."""

    task_id: str
    function_id: str
    payload: str
    task_group_id: str = ""
    function_code: str = ""  # filled in by the agent from its function cache
    container_id: str = ""
    resource_specification: dict = field(default_factory=dict)
    attempt: int = 0  # how many times it was re-dispatched after a lost manager
    container_spec: dict = field(default_factory=dict)  # {"type", "location"}, from the agent
    #: strategies the worker serializes the result with (the first that can); [] = default
    result_serializers: list[str] = field(default_factory=list)
    #: the submitter's retry policy (funcx.protocol.retry; {}: none), applied by the interchange
    retry_policy: dict = field(default_factory=dict)
    #: re-runs spent on the policy (failures of the function itself)
    retried: int = 0
    #: the attempts that failed so far (interchange only; sent with the final result)
    attempts: list = field(default_factory=list)
    #: re-runs ordered after a failed result (endpoint.retries): a manager that kept
    #: this task's earlier result runs it again rather than resending that result
    rerun: int = 0
    #: variables the worker sets while it runs this task (set by the manager: MPI
    #: mode's $PARSL_MPI_PREFIX and node list, endpoint.mpi)
    env: dict = field(default_factory=dict)
    #: who submitted it, as the service knows them ({"id", "username"}; written by the
    #: service, never the client): a multi-user endpoint maps it to a local account
    identity: dict = field(default_factory=dict)
    #: the submitter's values for a multi-user endpoint's user config template
    user_endpoint_config: dict = field(default_factory=dict)
    #: the input blobs its payload's reference items name, in their order (the
    #: agent fetched them: endpoint.blobs); extra frames on the sockets
    blobs: list = field(default_factory=list)

    STREAM_FIELDS = ("task_id", "function_id", "payload", "task_group_id", "container_id")

    def to_fields(self) -> dict[str, str]:
        out = {k: getattr(self, k) for k in self.STREAM_FIELDS}
        if self.resource_specification:
            out["resource_specification"] = msgspec.json.encode(
                self.resource_specification).decode()
        if self.result_serializers:
            out["result_serializers"] = msgspec.json.encode(self.result_serializers).decode()
        if self.retry_policy:
            out["retry_policy"] = msgspec.json.encode(self.retry_policy).decode()
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Task:
        """One single-task stream entry (the batched form is in streams.py)."""
        try:
            spec = fields.get("resource_specification")
            return cls(
                task_id=msgspec.convert(fields["task_id"], Id),
                function_id=msgspec.convert(fields["function_id"], Id),
                payload=msgspec.convert(fields["payload"], str),
                task_group_id=msgspec.convert(fields.get("task_group_id", ""), OptId),
                container_id=msgspec.convert(fields.get("container_id", ""), OptId),
                resource_specification=resource_specification(
                    msgspec.json.decode(spec) if spec else None),
                result_serializers=msgspec.json.decode(
                    fields.get("result_serializers") or "[]", type=SerializerPaths),
                retry_policy=_retry_policy(fields.get("retry_policy")),
            )
        except (KeyError, RecursionError, msgspec.DecodeError, msgspec.ValidationError) as e:
            raise _bad("task entry", e) from None

    def meta(self) -> TaskMeta:
        return TaskMeta(self.task_id, self.function_id, self.task_group_id, self.container_id,
                        self.resource_specification, self.attempt, self.container_spec,
                        self.result_serializers, self.env, self.rerun, len(self.blobs))


def _retry_policy(raw: str | None) -> dict[str, Any]:
    """A stream entry's retry policy (JSON text), checked; {} when absent."""
    from funcx.protocol.retry import RetryPolicyError, retry_policy

    if not raw:
        return {}
    try:
        return retry_policy(msgspec.json.decode(raw))
    except RetryPolicyError as e:
        raise ProtocolError(str(e)) from None


class TaskMeta(Struct, array_like=True):
    """A task's header row on the interchange -> manager -> worker sockets."""

    task_id: Id
    function_id: Id
    task_group_id: OptId = ""
    container_id: OptId = ""
    resource_specification: dict[str, Any] = field(default_factory=dict)
    attempt: Annotated[int, Meta(ge=0, le=1000)] = 0
    container_spec: dict[str, str] = field(default_factory=dict)
    result_serializers: SerializerPaths = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  #: see Task.env
    rerun: Annotated[int, Meta(ge=0, le=100_000)] = 0  #: see Task.rerun
    blobs: Blobs = 0  #: frames after its code and payload (see Task.blobs)


# ------------------------------------------------------------------------ results
class Result(Struct):
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
    #: what the task wrote to fd 1 / fd 2, bounded (see funcx.protocol.output_limits)
    stdout: str = ""
    stderr: str = ""
    #: a success's value in binary form when ``data`` is the reference item
    #: ``bb\n<task_id>`` (endpoint.blobs); extra frames on the sockets
    blobs: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.completion_t:
            self.completion_t = repr(time.time())

    def to_fields(self) -> dict[str, str]:
        out = {"kind": "result", "task_id": self.task_id, "status": self.status,
               "data": self.data, "task_group_id": self.task_group_id,
               "completion_t": self.completion_t}
        if self.exc_data:
            out["exc_data"] = self.exc_data
        if self.details:
            out["details"] = msgspec.json.encode(self.details).decode()
        for stream in STREAMS:
            if getattr(self, stream):
                out[stream] = getattr(self, stream)
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Result:
        try:
            d = fields.get("details")
            return cls(
                task_id=msgspec.convert(fields["task_id"], Id),
                status=msgspec.convert(fields["status"], ResultStatus),
                data=msgspec.convert(fields.get("data", ""), str),
                exc_data=msgspec.convert(fields.get("exc_data", ""), str),
                task_group_id=msgspec.convert(fields.get("task_group_id", ""), OptId),
                completion_t=msgspec.convert(fields.get("completion_t") or repr(time.time()),
                                             EpochStr),
                details=msgspec.json.decode(d, type=dict[str, Any]) if d else {},
                stdout=msgspec.convert(fields.get("stdout", ""), str),
                stderr=msgspec.convert(fields.get("stderr", ""), str),
            )
        except (KeyError, RecursionError, msgspec.DecodeError, msgspec.ValidationError) as e:
            raise _bad("result entry", e) from None

    def meta(self) -> ResultMeta:
        return ResultMeta(self.task_id, cast(ResultStatus, self.status), self.task_group_id,
                          self.completion_t, self.details or None, len(self.blobs))


class ResultMeta(Struct, array_like=True):
    """A result's header row on the worker -> manager -> interchange sockets and
    in a results-stream entry (its payloads travel beside it, packed)."""

    task_id: Id
    status: ResultStatus
    task_group_id: OptId = ""
    completion_t: EpochStr = ""
    details: dict[str, Any] | None = None
    blobs: Blobs = 0  #: frames after its usual ones (see Result.blobs)


class StatusUpdate(Struct):
    """A non-terminal state change for several tasks at once (e.g. running)."""

    status: str
    task_ids: list[str]

    def to_fields(self) -> dict[str, str]:
        return {"kind": "status", "v": str(VERSION), "status": self.status,
                "task_ids": msgspec.json.encode(self.task_ids).decode()}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> StatusUpdate:
        try:
            return cls(status=msgspec.convert(fields["status"], EndpointStatus),
                       task_ids=msgspec.json.decode(fields["task_ids"],
                                                    type=list[Id]))
        except (KeyError, RecursionError, msgspec.DecodeError, msgspec.ValidationError) as e:
            raise _bad("status entry", e) from None


def parse_result_entry(fields: dict[str, str]) -> Result | StatusUpdate:
    kind = fields.get("kind", "result")
    if kind == "status":
        return StatusUpdate.from_fields(fields)
    if kind == "result":
        return Result.from_fields(fields)
    raise ProtocolError(f"unknown result-stream entry kind {str(kind)[:32]!r}")


# ------------------------------------------------------------------ ZeroMQ frames
class Kind:
    """Message kinds on the interchange <-> manager <-> worker sockets."""

    REGISTER = b"REGISTER"  # manager -> interchange: who I am, how many workers
    TASKS = b"TASKS"  # interchange -> manager, manager -> worker
    RESULTS = b"RESULTS"  # manager -> interchange, worker -> manager
    RUNNING = b"RUNNING"  # manager -> interchange: these tasks started
    HEARTBEAT = b"HEARTBEAT"  # both ways
    SHUTDOWN = b"SHUTDOWN"  # interchange -> manager
    READY = b"READY"  # worker -> manager: idle
    #: interchange -> manager: you are not registered (any more): register again
    REREGISTER = b"REREGISTER"
    #: interchange -> manager: these tasks were cancelled: drop them, and kill the
    #: worker running one (and its children), starting a replacement
    CANCEL = b"CANCEL"


class Register(Struct, forbid_unknown_fields=True):
    """A manager's first message: who it is and what it can hold."""

    manager_id: Name
    workers: Annotated[int, Meta(ge=1, le=100_000)]
    capacity: Annotated[int, Meta(ge=0, le=1_000_000)]
    block_id: Name = ""
    hostname: Name = "?"
    pid: Annotated[int, Meta(ge=0, le=1 << 31)] = 0
    python: Name = ""
    containers: list[OptId] = field(default_factory=lambda: [""])
    #: tasks the manager still holds when it (re-)registers: running, queued on
    #: it, or finished with a result it is not sure was delivered (see
    #: endpoint.interchange_state: re-attached, or their results refused)
    held: Annotated[list[Id], Meta(max_length=MAX_HELD)] = field(default_factory=list)
    #: results this manager had sent before this registration (the base of the
    #: count the interchange acknowledges in its heartbeats)
    results_base: Annotated[int, Meta(ge=0, le=1 << 62)] = 0
    #: started by hand (``funcx-endpoint manager``), not by the daemon's provider:
    #: the endpoint never tells it to shut down, so it outlives ``restart``
    hand_started: bool = False
    #: its node and its workers' CPUs and accelerators (funcx.protocol.hardware)
    hardware: NodeHardware | None = None


class Heartbeat(Struct, forbid_unknown_fields=True):
    t: float = 0.0
    containers: list[OptId] | None = None  # which containers its workers run now
    #: interchange -> manager: results received from that manager so far
    #: (counted from its Register's ``results_base``); the manager forgets
    #: those it kept for a resend after a reconnect
    acked: Annotated[int, Meta(ge=0, le=1 << 62)] | None = None
    #: manager -> interchange: its node's available memory now (bytes)
    memory_available: Annotated[int, Meta(ge=0, le=1 << 60)] | None = None


#: the header each kind carries; a kind missing here carries none (null)
HEADERS: dict[bytes, Any] = {
    Kind.REGISTER: Register,
    Kind.TASKS: list[TaskMeta],
    Kind.RESULTS: list[ResultMeta],
    Kind.RUNNING: list[Id],
    Kind.HEARTBEAT: Heartbeat | None,
    Kind.SHUTDOWN: None,
    Kind.READY: dict[str, int] | None,  # {"pid": ...}
    Kind.REREGISTER: None,
    Kind.CANCEL: Annotated[list[Id], Meta(min_length=1, max_length=MAX_HELD)],
}
_DECODERS = {k: msgspec.json.Decoder(t) for k, t in HEADERS.items()}
_encoder = msgspec.json.Encoder()


class Message(Struct):
    kind: bytes
    header: Any
    blobs: list[bytes]


def pack(kind: bytes, header: Any = None, blobs: Iterable[bytes] = ()) -> list[bytes]:
    return [bytes([VERSION]) + kind, _encoder.encode(header), *blobs]


def unpack(frames: list[bytes]) -> Message:
    """Decode one multipart message through its kind's schema."""
    if len(frames) < 2 or not frames[0]:
        raise ProtocolError("short message")
    if frames[0][0] != VERSION:
        raise ProtocolError(f"protocol version {frames[0][0]} != {VERSION}")
    kind = bytes(frames[0][1:])
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise ProtocolError(f"unknown message kind {kind[:32]!r}")
    try:
        header = decoder.decode(frames[1])
    except (RecursionError, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise _bad(f"{kind.decode()} header", e) from None
    return Message(kind, header, list(frames[2:]))


def _texts(blobs: list[Any], what: str) -> list[str]:
    """Frames (bytes, or memoryviews of received frames) as UTF-8 text."""
    try:
        return [str(b, "utf-8") for b in blobs]
    except UnicodeDecodeError as e:
        raise _bad(what, e) from None


def pack_tasks(tasks: list[Task]) -> list[Any]:
    """Per task: its code, its payload, then its blobs (as they are: no copy)."""
    blobs: list[Any] = []
    for t in tasks:
        blobs.append(t.function_code.encode())
        blobs.append(t.payload.encode())
        blobs.extend(t.blobs)
    return pack(Kind.TASKS, [t.meta() for t in tasks], blobs)


def unpack_tasks(msg: Message) -> list[Task]:
    extra = sum(m.blobs for m in msg.header) if msg.kind == Kind.TASKS else -1
    if extra < 0 or len(msg.blobs) != 2 * len(msg.header) + extra:
        raise ProtocolError("task batch frame count mismatch")
    if extra:  # some tasks carry blobs: walk the frames
        return list(_tasks_with_blobs(msg.header, msg.blobs))
    texts = _texts(msg.blobs, "task batch")
    return [Task(task_id=m.task_id, function_id=m.function_id, payload=texts[2 * i + 1],
                 task_group_id=m.task_group_id, function_code=texts[2 * i],
                 container_id=m.container_id,
                 resource_specification=m.resource_specification, attempt=m.attempt,
                 container_spec=m.container_spec, result_serializers=m.result_serializers,
                 env=m.env, rerun=m.rerun)
            for i, m in enumerate(msg.header)]


def _tasks_with_blobs(header: list[TaskMeta], frames: list[Any]) -> Iterable[Task]:
    at = 0
    for m in header:
        code, payload = _texts(frames[at:at + 2], "task batch")
        blobs = frames[at + 2:at + 2 + m.blobs]
        at += 2 + m.blobs
        yield Task(task_id=m.task_id, function_id=m.function_id, payload=payload,
                   task_group_id=m.task_group_id, function_code=code,
                   container_id=m.container_id,
                   resource_specification=m.resource_specification, attempt=m.attempt,
                   container_spec=m.container_spec, result_serializers=m.result_serializers,
                   env=m.env, rerun=m.rerun, blobs=blobs)


def pack_results(results: list[Result]) -> list[Any]:
    """Two frames per result (data, exception), or four (and stdout, stderr)
    for every result of a batch in which any task wrote output; then that
    result's blobs (as they are: no copy)."""
    output = any(r.stdout or r.stderr for r in results)
    blobs: list[Any] = []
    for r in results:
        blobs.append(r.data.encode())
        blobs.append(r.exc_data.encode())
        if output:
            blobs.append(r.stdout.encode())
            blobs.append(r.stderr.encode())
        blobs.extend(r.blobs)
    return pack(Kind.RESULTS, [r.meta() for r in results], blobs)


def unpack_results(msg: Message) -> list[Result]:
    n = len(msg.header) if msg.kind == Kind.RESULTS else -1
    extra = sum(m.blobs for m in msg.header) if n > 0 else 0
    if n < 0 or len(msg.blobs) - extra not in (2 * n, 4 * n):
        raise ProtocolError("result batch frame count mismatch")
    per = (len(msg.blobs) - extra) // n if n else 2
    if extra:  # some results carry blobs: walk the frames
        return list(_results_with_blobs(msg.header, msg.blobs, per))
    texts = _texts(msg.blobs, "result batch")
    return [Result(task_id=m.task_id, status=m.status, data=texts[per * i],
                   exc_data=texts[per * i + 1], task_group_id=m.task_group_id,
                   completion_t=m.completion_t, details=m.details or {},
                   stdout=texts[per * i + 2] if per == 4 else "",
                   stderr=texts[per * i + 3] if per == 4 else "")
            for i, m in enumerate(msg.header)]


def _results_with_blobs(header: list[ResultMeta], frames: list[Any], per: int) -> Iterable[Result]:
    at = 0
    for m in header:
        texts = _texts(frames[at:at + per], "result batch")
        blobs = frames[at + per:at + per + m.blobs]
        at += per + m.blobs
        yield Result(task_id=m.task_id, status=m.status, data=texts[0], exc_data=texts[1],
                     task_group_id=m.task_group_id, completion_t=m.completion_t,
                     details=m.details or {}, stdout=texts[2] if per == 4 else "",
                     stderr=texts[3] if per == 4 else "", blobs=blobs)
