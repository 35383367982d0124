"""The interchange's manager bookkeeping as a pure state machine (after
dask.distributed's ``worker_state_machine.py``, like :mod:`endpoint.agent_state`):
no sockets, no threads, no clock (``now`` comes in with each event).  The
ZeroMQ shell (:mod:`endpoint.interchange`) decodes frames, feeds events and
carries out the instructions; everything here is unit-tested without ZeroMQ
(tests/test_interchange_state.py).

What it holds: the registered managers (:class:`ManagerState`: credits, last
heard, the tasks dispatched to each), the queue of tasks waiting for a
manager, when work was last outstanding (``idle_since``, for scale-in) and
counters of refused input (``stats``).

One task's path::

    TasksQueued([task])              -> (queued)
    Tick(now)                        -> SendTasks(mid, [task]),   (credit spent)
                                        Output([StatusUpdate(waiting-for-launch)])
    RunningFrom(mid, [task_id], now) -> Output([StatusUpdate(running)])
    ResultsFrom(mid, [result], now)  -> Output([result])         (credit returned)

or, when its manager falls silent past the threshold, ``Tick`` answers
``Lost(manager)`` and re-queues the task with ``attempt + 1`` (re-sent by the
same ``Tick``), or, beyond ``max_retries``, fails it: ``Output([ManagerLost
result])``.  A ``SendTasks`` the shell could not deliver comes back as
``SendFailed`` and its tasks are queued again, at the front.

Managers are distrusted (DESIGN decision 8): a result or a running notice
applies only to a task dispatched to the manager that sends it (the rest are
counted and answered with ``Dropped``, never forwarded), a result's task
group comes from the task, never the message, and a manager's second
REGISTER is ignored (it would orphan the tasks it holds).

Dispatch decisions are made once per ``Tick`` (the shell ticks after each
poll), so that a poll's worth of queued tasks and returned credits goes out
as one batch per manager.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from endpoint.scheduling import ManagerState, assign, lost_manager_tasks
from funcx.protocol.messages import Heartbeat, Register, Result, StatusUpdate, Task
from funcx.protocol.states import TaskState

RUNNING = TaskState.RUNNING.value
WAITING_FOR_LAUNCH = TaskState.WAITING_FOR_LAUNCH.value


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


Event = (TasksQueued | ManagerRegistered | ResultsFrom | RunningFrom | HeartbeatFrom
         | StrayMessage | BadMessage | SendFailed | Tick)


# ------------------------------------------------------------- instructions
@dataclass(frozen=True, slots=True)
class SendTasks:
    """Send these tasks to manager ``mid`` in one batch (already booked to it;
    answer :class:`SendFailed` if that fails)."""

    mid: bytes
    tasks: list[Task]


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    """Send a heartbeat to each of these managers (a failure does not matter)."""

    mids: list[bytes]


@dataclass(frozen=True, slots=True)
class Output:
    """Results and status updates for the agent's writer."""

    items: list[Result | StatusUpdate]


@dataclass(frozen=True, slots=True)
class Dropped:
    """Input from ``mid`` refused (``why``, for the log); ``task_ids`` it named."""

    mid: bytes
    task_ids: list[str]
    why: str


@dataclass(frozen=True, slots=True)
class Registered:
    """A manager registered (for the log)."""

    manager: ManagerState


@dataclass(frozen=True, slots=True)
class Lost:
    """A manager fell silent for ``silent_for`` seconds and is forgotten; its
    ``retried`` tasks are queued again, the rest failed (in an :class:`Output`)."""

    manager: ManagerState
    silent_for: float
    retried: int


Instruction = SendTasks | SendHeartbeat | Output | Dropped | Registered | Lost


# ------------------------------------------------------------ the machine
class InterchangeState:
    """The interchange's bookkeeping.  Not thread-safe: the interchange loop alone
    calls :meth:`handle`; other threads only read (:meth:`snapshot`, ...)."""

    def __init__(self, heartbeat_period: float, heartbeat_threshold: float,
                 max_retries: int, now: float):
        self.period = heartbeat_period
        self.threshold = heartbeat_threshold
        self.max_retries = max_retries
        self.managers: dict[bytes, ManagerState] = {}
        self.pending: deque[Task] = deque()  # waiting for a manager, in arrival order
        self.last_beat = float("-inf")  # the first tick sends heartbeats
        self.idle_since = now  # last tick with work outstanding (scale-in)
        #: refused input, by reason (results for tasks not dispatched to their sender, ...)
        self.stats = {"bad_messages": 0, "foreign_results": 0, "foreign_running": 0,
                      "unregistered": 0, "loop_errors": 0}
        self._handlers: dict[type, Callable[[Any], list]] = {
            TasksQueued: self._tasks_queued, ManagerRegistered: self._registered,
            ResultsFrom: self._results, RunningFrom: self._running,
            HeartbeatFrom: self._heartbeat, StrayMessage: self._stray,
            BadMessage: self._bad, SendFailed: self._send_failed, Tick: self._tick,
        }

    def handle(self, event: Event) -> list[Instruction]:
        return self._handlers[type(event)](event)

    # ----------------------------------------------------------- queries
    def outstanding(self) -> int:
        """Tasks queued here or held by managers."""
        return len(self.pending) + sum(len(m.tasks) for m in self.managers.values())

    def snapshot(self) -> dict:
        """Managers, workers and tasks, for the endpoint's status."""
        managers = list(self.managers.values())
        busy = sum(len(m.tasks) for m in managers)
        total = sum(m.workers for m in managers)
        return {
            "managers": len(managers),
            "total_workers": total,
            "idle_workers": max(0, total - busy),
            "pending_tasks_in_interchange": len(self.pending),
            "running_tasks": busy,
            "manager_details": [
                {"manager_id": m.manager_id.decode(errors="replace"), "block_id": m.block_id,
                 "hostname": m.hostname, "pid": m.pid, "workers": m.workers,
                 "tasks": len(m.tasks), "containers": list(m.containers)}
                for m in managers],
        }

    def busy_blocks(self) -> set[str]:
        """Blocks whose managers hold tasks (not to be scaled in)."""
        return {m.block_id for m in list(self.managers.values()) if m.tasks}

    # ------------------------------------------------------ from the agent
    def _tasks_queued(self, ev: TasksQueued) -> list:
        self.pending.extend(ev.tasks)
        return []

    # --------------------------------------------------- from the managers
    def _known(self, mid: bytes, kind: str, now: float) -> tuple[ManagerState | None, list]:
        """The registered manager ``mid`` (heard from ``now``), or None and why
        its message is dropped."""
        m = self.managers.get(mid)
        if m is None:
            self.stats["unregistered"] += 1
            return None, [Dropped(mid, [], f"sent {kind} before registering; dropped")]
        m.last_heard = now
        return m, []

    def _registered(self, ev: ManagerRegistered) -> list:
        m = self.managers.get(ev.mid)
        if m is not None:  # re-registering would orphan the tasks it holds
            m.last_heard = ev.now
            return [Dropped(ev.mid, [], "registered again; ignored")]
        h = ev.header
        m = ManagerState(ev.mid, h.block_id, h.hostname, h.workers, h.capacity, ev.now,
                         containers=tuple(h.containers), pid=h.pid)
        self.managers[ev.mid] = m
        return [Registered(m)]

    def _results(self, ev: ResultsFrom) -> list:
        m, out = self._known(ev.mid, "RESULTS", ev.now)
        if m is None:
            return out
        accepted: list[Result | StatusUpdate] = []
        foreign: list[str] = []
        tasks = m.tasks
        for r in ev.results:
            task = tasks.pop(r.task_id, None)
            if task is None:  # never dispatched to this manager (or already answered)
                foreign.append(r.task_id)
                continue
            r.task_group_id = task.task_group_id  # from the task, never the message
            accepted.append(r)
        m.credits += len(accepted)
        if foreign:
            self.stats["foreign_results"] += len(foreign)
            out.append(Dropped(ev.mid, foreign, f"sent {len(foreign)} result(s) for tasks "
                                                f"not dispatched to it; dropped"))
        if accepted:
            out.append(Output(accepted))
        return out

    def _running(self, ev: RunningFrom) -> list:
        m, out = self._known(ev.mid, "RUNNING", ev.now)
        if m is None:
            return out
        mine = [t for t in dict.fromkeys(ev.task_ids) if t in m.tasks]
        if len(mine) < len(ev.task_ids):
            n = len(ev.task_ids) - len(mine)
            self.stats["foreign_running"] += n
            others, first = [], set(mine)  # its own once each; strangers and repeats not
            for t in ev.task_ids:
                if t in first:
                    first.discard(t)
                else:
                    others.append(t)
            out.append(Dropped(ev.mid, others, f"reported {n} task(s) running that are not "
                                               f"its own; ignored"))
        if mine:
            out.append(Output([StatusUpdate(RUNNING, mine)]))
        return out

    def _heartbeat(self, ev: HeartbeatFrom) -> list:
        m, out = self._known(ev.mid, "HEARTBEAT", ev.now)
        if m is not None and ev.header is not None and ev.header.containers is not None:
            m.containers = tuple(ev.header.containers)  # containers its workers run now
        return out

    def _stray(self, ev: StrayMessage) -> list:
        kind = ev.kind.decode(errors="replace")
        m, out = self._known(ev.mid, kind, ev.now)
        if m is None:
            return out
        self.stats["bad_messages"] += 1
        return [Dropped(ev.mid, [], f"sent a {kind} message, which managers do not send; "
                                    f"dropped")]

    def _bad(self, ev: BadMessage) -> list:
        self.stats["bad_messages"] += 1
        return []

    # --------------------------------------------------------- dispatching
    def _send_failed(self, ev: SendFailed) -> list:
        """Take back what could not be sent (what the manager still holds: a lost
        manager's tasks were re-queued already) and queue it first again."""
        m = self.managers.get(ev.mid)
        if m is None:
            return []
        back = [t for t in ev.tasks if m.tasks.pop(t.task_id, None) is not None]
        m.credits += len(back)
        self.pending.extendleft(reversed(back))
        return []

    def _tick(self, ev: Tick) -> list:
        now = ev.now
        out: list = []
        for mid, m in list(self.managers.items()):
            if now - m.last_heard > self.threshold:
                del self.managers[mid]
                retry, failed = lost_manager_tasks(m, self.max_retries)
                self.pending.extendleft(reversed(retry))
                out.append(Lost(m, now - m.last_heard, len(retry)))
                if failed:
                    out.append(Output([*failed]))
        if self.pending and self.managers:
            out.extend(self._dispatch())
        if now - self.last_beat >= self.period:
            self.last_beat = now
            if self.managers:
                out.append(SendHeartbeat(list(self.managers)))
        if self.pending or any(m.tasks for m in self.managers.values()):
            self.idle_since = now
        return out

    def _dispatch(self) -> list:
        """Hand pending tasks to managers by credit; the tasks handed out are
        ``waiting-for-launch`` until their manager reports them running (the
        agent drops that update for tasks whose result follows within its
        status deferral, so short tasks cost no write)."""
        out: list = []
        launching: list[str] = []
        managers = self.managers
        for mid, tasks in assign(self.pending, list(managers.values())).items():
            m = managers[mid]
            m.credits -= len(tasks)
            held = m.tasks
            for t in tasks:
                held[t.task_id] = t
                launching.append(t.task_id)
            out.append(SendTasks(mid, tasks))
        if launching:
            out.append(Output([StatusUpdate(WAITING_FOR_LAUNCH, launching)]))
        return out

