"""The events and instructions of the interchange's state machine
(:mod:`endpoint.interchange_state`): what the ZeroMQ shell
(:mod:`endpoint.interchange`) feeds it, and what it answers.  Plain frozen
dataclasses, no behaviour."""
from __future__ import annotations

from dataclasses import dataclass, field

from endpoint.scheduling import ManagerState
from funcx.protocol.messages import Heartbeat, Register, Result, StatusUpdate, Task


# ------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class TasksQueued:
    """Tasks handed over by the agent, to dispatch in arrival order."""

    tasks: list[Task]


@dataclass(frozen=True, slots=True)
class ManagerRegistered:
    """A manager's REGISTER message (decoded)."""

    mid: bytes
    header: Register
    now: float


@dataclass(frozen=True, slots=True)
class ResultsFrom:
    """A manager's RESULTS message (decoded)."""

    mid: bytes
    results: list[Result]
    now: float


@dataclass(frozen=True, slots=True)
class RunningFrom:
    """A manager's RUNNING notice: these tasks started."""

    mid: bytes
    task_ids: list[str]
    now: float


@dataclass(frozen=True, slots=True)
class HeartbeatFrom:
    """A manager's HEARTBEAT (header may be None)."""

    mid: bytes
    header: Heartbeat | None
    now: float


@dataclass(frozen=True, slots=True)
class StrayMessage:
    """A well-formed message of a kind managers do not send (TASKS, READY...)."""

    mid: bytes
    kind: bytes
    now: float


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A message from ``mid`` that could not be decoded or handled (counted only:
    the shell logs it with its exception)."""

    mid: bytes


@dataclass(frozen=True, slots=True)
class SendFailed:
    """The shell could not deliver ``SendTasks(mid, tasks)``."""

    mid: bytes
    tasks: list[Task]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes (after each poll): dispatch, heartbeats, lost managers."""

    now: float


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """The agent learned these tasks were cancelled at the service: drop them
    wherever they are here, and have the managers holding them kill them."""

    task_ids: list[str]


Event = (TasksQueued | ManagerRegistered | ResultsFrom | RunningFrom | HeartbeatFrom
         | StrayMessage | BadMessage | SendFailed | Tick | CancelRequested)


# ------------------------------------------------------------- instructions
@dataclass(frozen=True, slots=True)
class SendTasks:
    """Send these tasks to manager ``mid`` in one batch (already booked to it;
    answer :class:`SendFailed` if that fails)."""

    mid: bytes
    tasks: list[Task]


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    """Send a heartbeat to each of these managers (a failure does not matter),
    each with ``acked[mid]``: the results received from it so far."""

    mids: list[bytes]
    acked: dict[bytes, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Output:
    """Results and status updates for the agent's writer."""

    items: list[Result | StatusUpdate]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Input from ``mid`` refused (``why``, for the log); ``task_ids`` it named.
    ``routine``: expected in normal operation (a result or RUNNING report that
    was in flight when its task was cancelled), logged at debug, not warning."""

    mid: bytes
    task_ids: list[str]
    why: str
    routine: bool = False


@dataclass(frozen=True, slots=True)
class Registered:
    """A manager registered, or registered again after a reconnect (for the
    log): of the tasks it said it holds, ``kept`` were still booked to it,
    ``reattached`` taken back from the queue (``refunded`` of them had a
    lost-manager retry given back), ``refused`` had gone elsewhere or finished,
    ``awaited`` are not known here yet; ``requeued`` were booked to it but it
    never got them."""

    manager: ManagerState
    again: bool = False
    kept: list[str] = field(default_factory=list)
    reattached: list[str] = field(default_factory=list)
    refunded: int = 0
    refused: list[str] = field(default_factory=list)
    awaited: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Lost:
    """A manager fell silent for ``silent_for`` seconds and is forgotten; its
    ``retried`` tasks are queued again, the rest failed (in an :class:`Output`)."""

    manager: ManagerState
    silent_for: float
    retried: int


@dataclass(frozen=True, slots=True)
class AskRegister:
    """Tell manager ``mid``, which sends heartbeats but is not registered (it
    was declared lost while its connection lived on), to register again."""

    mid: bytes


@dataclass(frozen=True, slots=True)
class Stalled:
    """The interchange itself did not run for ``seconds`` (its process was
    stopped, suspended, or starved): the managers' silence in that time is not
    theirs, so each gets a full threshold from now before it is declared lost."""

    seconds: float


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Tell manager ``mid`` to drop these tasks and kill the workers running any
    of them (they are no longer booked to it: a later result is refused)."""

    mid: bytes
    task_ids: list[str]


Instruction = (SendTasks | SendHeartbeat | Output | Dropped | Registered | Lost | Stalled
               | AskRegister | SendCancel)
