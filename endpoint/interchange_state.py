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
counted and answered with ``Dropped``, never forwarded), and a result's task
group comes from the task, never the message.

Links that come back (issue 15).  A manager that hears nothing for longer
than its threshold keeps its workers and tasks, reconnects and registers
again, naming in ``Register.held`` every task it still holds (running, queued
on it, or finished with a result it is not sure was delivered).  On such a
REGISTER each held task is:

* **kept** when it is still booked to that manager (a cut shorter than the
  interchange's threshold); a task booked to it that it does *not* hold was
  lost on the old connection and is queued again, first, with no retry spent;
* **re-attached** when it waits in the queue (re-queued when the manager was
  declared lost, or handed over again by a restarted agent) and not yet sent
  elsewhere: booked back to the manager, not sent again, and the retry its
  loss cost is refunded — a cut neither burns a retry nor runs a task twice;
  A lost manager's tasks are held back (``hold_lost``: the shell uses one
  threshold) before they go to another manager, counted from when one is
  there to take them: managers cut off together (a node's link) come back
  at slightly different times, and each should find its own tasks waiting;
  a manager that is really gone costs its tasks that much more delay;
* **refused** when it was re-dispatched to another manager or has finished:
  the interchange sends the manager nothing about it (there is no "forget"
  message); its later result is refused like any result for a task not
  dispatched to its sender, so one task's result is recorded exactly once;
* **awaited** when the interchange does not know it (a restarted agent has not
  handed it over yet): when it arrives (``TasksQueued``) it is booked to that
  manager rather than sent fresh, and a result that came first is kept
  (``early``, bounded) and passed on when the task arrives.

A manager's claims are bounded like its other input: it can take back only a
task waiting in the queue (one it could be sent anyway) or one not known here
yet, never a task booked to another manager, and a re-registering manager's
capacity stays as it first registered.

A manager declared lost whose connection lived on (it was stopped, or the
link stalled without breaking) keeps sending heartbeats; it is asked to
register again (:class:`AskRegister`, a REREGISTER message, once a period)
rather than left to notice the silence.  An interchange that stalled itself
does not declare its managers lost for the silence it did not hear
(:class:`Stalled`).

Results a manager sent just before a cut may be lost with the connection, so
a manager keeps each result until the interchange's heartbeat acknowledges it
(``Heartbeat.acked``: results received from that manager, counted from
``Register.results_base``) and sends the unacknowledged ones again after it
registers; refusal of a second result keeps the count exact.

Cancellation (issue 16): ``CancelRequested`` drops a task wherever it is —
queued here, held back for a lost manager, or booked to a manager, which is
told to kill it (``SendCancel``) and gets its credit back at once; a later
result for it is refused as not dispatched to its sender.  An id not here yet
is remembered (bounded), so the task is dropped when it arrives, and a
manager that claims it when it registers is told to kill it.

The events and instructions are defined in :mod:`endpoint.interchange_events`
(re-exported here).

Dispatch decisions are made once per ``Tick`` (the shell ticks after each
poll), so that a poll's worth of queued tasks and returned credits goes out
as one batch per manager.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from endpoint import retries
from endpoint.interchange_events import (  # noqa: F401 - re-exported
    AskRegister,
    BadMessage,
    CancelRequested,
    Dropped,
    Event,
    HeartbeatFrom,
    Instruction,
    Lost,
    ManagerRegistered,
    Output,
    Registered,
    ResultsFrom,
    RunningFrom,
    SendCancel,
    SendFailed,
    SendHeartbeat,
    SendTasks,
    Stalled,
    StrayMessage,
    TasksQueued,
    Tick,
)
from endpoint.interchange_register import forget_holds, reconcile
from endpoint.scheduling import ManagerState, assign, lost_manager_tasks
from funcx.protocol.messages import Result, StatusUpdate, Task
from funcx.protocol.states import TaskState

RUNNING = TaskState.RUNNING.value
FAILED = TaskState.FAILED.value
WAITING_FOR_LAUNCH = TaskState.WAITING_FOR_LAUNCH.value
#: results kept for held tasks the interchange has not been handed yet
MAX_EARLY = 10_000
#: finished task ids remembered, to refuse a re-registering manager's claim on them
MAX_DONE = 100_000
#: the most unregistered senders remembered for rate-limiting AskRegister
MAX_ASKED = 10_000
#: cancelled task ids remembered, to drop them when they arrive late (bounded)
MAX_CANCELLED = 100_000


def refill_batch(capacity: int, workers: int) -> int:
    """Credits a manager that has a task for each of its workers gets back
    before more are sent to it: half its prefetch (at least 1), so its queue is
    refilled in batches (one message, not one per result) and never runs dry."""
    return max(1, (capacity - workers) // 2)


# ------------------------------------------------------------ the machine
class InterchangeState:
    """The interchange's bookkeeping.  Not thread-safe: the interchange loop alone
    calls :meth:`handle`; other threads only read (:meth:`snapshot`, ...)."""

    def __init__(self, heartbeat_period: float, heartbeat_threshold: float,
                 max_retries: int, now: float, stall_after: float | None = None,
                 hold_lost: float = 0.0):
        """``stall_after``: a gap between two ticks longer than this means the
        interchange itself stalled (see :class:`Stalled`); None: never assumed.
        ``hold_lost``: seconds a lost manager's tasks wait for it to come back,
        counted from when another manager could take them (0: none)."""
        self.period = heartbeat_period
        self.threshold = heartbeat_threshold
        self.max_retries = max_retries
        self.stall_after = stall_after
        self.hold_lost = hold_lost
        #: a lost manager's tasks, held back for it (see ``hold_lost``), in order
        self.parked: dict[str, Task] = {}
        self.release_at: float | None = None  # when the parked tasks go to anyone
        self.last_tick: float | None = None
        self.managers: dict[bytes, ManagerState] = {}
        self.pending: deque[Task] = deque()  # waiting for a manager, in arrival order
        self.last_beat = float("-inf")  # the first tick sends heartbeats
        self.idle_since = now  # last tick with work outstanding (scale-in)
        #: refused input, by reason (results for tasks not dispatched to their sender, ...)
        self.stats = {"bad_messages": 0, "foreign_results": 0, "foreign_running": 0,
                      "unregistered": 0, "loop_errors": 0, "cancelled": 0, "retried": 0}
        #: results / RUNNING reports that were in flight when their task was cancelled
        self.stats["cancelled_late"] = 0
        #: task id -> the manager it was re-queued from when declared lost
        self.lost_from: dict[str, bytes] = {}
        #: held task ids not known here yet -> the manager that holds them
        self.awaiting: dict[str, bytes] = {}
        #: held task ids that went elsewhere or finished -> the manager that held them
        self.refused: dict[str, bytes] = {}
        #: results for awaited tasks that arrived before the task (bounded)
        self.early: dict[str, Result] = {}
        #: recently finished task ids (bounded; insertion order)
        self.done: dict[str, None] = {}
        #: results received from each manager, from its ``results_base``
        self.received: dict[bytes, int] = {}
        #: managers started by hand: never told to shut down
        self.hand_started: set[bytes] = set()
        #: each registered manager's capacity, as it first registered
        self.capacity: dict[bytes, int] = {}
        #: unregistered senders of heartbeats -> when they were last asked to register
        self.asked: dict[bytes, float] = {}
        #: recently cancelled task ids (bounded; insertion order): dropped on arrival
        self.cancelled: dict[str, None] = {}
        #: tasks queued since the last tick, not yet reported waiting-for-launch
        self.unreported: list[str] = []
        #: queued tasks already reported waiting-for-launch (not said again when sent)
        self.said_waiting: set[str] = set()
        self._handlers: dict[type, Callable[[Any], list]] = {
            TasksQueued: self._tasks_queued, ManagerRegistered: self._registered,
            ResultsFrom: self._results, RunningFrom: self._running,
            HeartbeatFrom: self._heartbeat, StrayMessage: self._stray,
            BadMessage: self._bad, SendFailed: self._send_failed, Tick: self._tick,
            CancelRequested: self._cancel,
        }

    def handle(self, event: Event) -> list[Instruction]:
        return self._handlers[type(event)](event)

    # ----------------------------------------------------------- queries
    def outstanding(self) -> int:
        """Tasks queued here or held by managers."""
        return (len(self.pending) + len(self.parked)
                + sum(len(m.tasks) for m in self.managers.values()))

    def snapshot(self) -> dict:
        """Managers, workers and tasks, for the endpoint's status."""
        managers = list(self.managers.values())
        busy = sum(len(m.tasks) for m in managers)
        total = sum(m.workers for m in managers)
        return {
            "managers": len(managers),
            "total_workers": total,
            "idle_workers": max(0, total - busy),
            "pending_tasks_in_interchange": len(self.pending) + len(self.parked),
            "running_tasks": busy,
            "manager_details": [
                {"manager_id": m.manager_id.decode(errors="replace"), "block_id": m.block_id,
                 "hostname": m.hostname, "pid": m.pid, "workers": m.workers,
                 "tasks": len(m.tasks), "containers": list(m.containers),
                 "hand_started": m.manager_id in self.hand_started}
                for m in managers],
        }

    def busy_blocks(self) -> set[str]:
        """Blocks whose managers hold tasks (not to be scaled in); hand-started
        managers belong to no block of the daemon's."""
        hand = self.hand_started
        return {m.block_id for m in list(self.managers.values())
                if m.tasks and m.manager_id not in hand}

    def block_managers(self) -> list[bytes]:
        """Managers the endpoint started (told to shut down when it stops);
        hand-started ones are left to reconnect to the next start."""
        return [mid for mid in list(self.managers) if mid not in self.hand_started]

    # ------------------------------------------------------ from the agent
    def _tasks_queued(self, ev: TasksQueued) -> list:
        """Queue new tasks; one a registered manager already holds (it told us
        when it registered) is booked to it instead, and a result it sent
        before the task arrived is passed on now."""
        tasks = ev.tasks
        if self.cancelled:  # cancelled before they reached us
            tasks = [t for t in tasks if t.task_id not in self.cancelled]
        if not self.awaiting and not self.early:
            self.pending.extend(tasks)
            self.unreported.extend(t.task_id for t in tasks)
            return []
        ready: list[Result | StatusUpdate] = []
        for t in tasks:
            tid = t.task_id
            r = self.early.pop(tid, None)
            mid = self.awaiting.pop(tid, None)
            if r is not None:
                r.task_group_id = t.task_group_id  # from the task, never the message
                self._finished(tid)
                ready.append(r)
                continue
            m = self.managers.get(mid) if mid is not None else None
            if m is not None:
                m.tasks[tid] = t  # its credit was taken when it registered
            else:
                self.pending.append(t)
                self.unreported.append(tid)
        return [Output(ready)] if ready else []

    def _finished(self, tid: str) -> None:
        done = self.done
        done[tid] = None
        if len(done) > MAX_DONE:
            del done[next(iter(done))]

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

    def _forget_holds(self, mid: bytes) -> None:
        """Drop what ``mid`` said it held and we did not book to it."""
        forget_holds(self, mid)

    def _registered(self, ev: ManagerRegistered) -> list:
        """A manager registers, or registers again after a reconnect
        (:func:`endpoint.interchange_register.reconcile`)."""
        return reconcile(self, ev)

    def _results(self, ev: ResultsFrom) -> list:
        m, out = self._known(ev.mid, "RESULTS", ev.now)
        if m is None:
            return out
        accepted: list[Result | StatusUpdate] = []
        foreign: list[str] = []
        late: list[str] = []  # in flight when their task was cancelled: routine
        tasks = m.tasks
        mid = ev.mid
        self.received[mid] = self.received.get(mid, 0) + len(ev.results)
        for r in ev.results:
            tid = r.task_id
            task = tasks.pop(tid, None)
            if task is not None:
                m.credits += 1
                if r.status == FAILED:  # runs again, maybe elsewhere (endpoint.retries)
                    why = retries.decide(task, r, self.max_retries)
                    if why is not None:
                        retries.note_retry(task, r, why, mid.decode(errors="replace"))
                        self.pending.append(task)
                        self.stats["retried"] += 1
                        continue
                if task.attempts or task.retry_policy:
                    retries.finish(task, r, mid.decode(errors="replace"))
                r.task_group_id = task.task_group_id  # from the task, never the message
                accepted.append(r)
                self._finished(tid)
            elif self.awaiting.get(tid) == mid:  # held, its task not handed to us yet
                del self.awaiting[tid]
                m.credits += 1
                self.early[tid] = r
                if len(self.early) > MAX_EARLY:
                    del self.early[next(iter(self.early))]
            elif self.refused.get(tid) == mid:  # held, but it went elsewhere or finished
                del self.refused[tid]
                m.credits += 1
                foreign.append(tid)
            elif tid in self.cancelled:  # killed here meanwhile (its credit came back then)
                late.append(tid)
            else:  # never dispatched to this manager (or already answered)
                foreign.append(tid)
        if late:
            self.stats["cancelled_late"] += len(late)
            out.append(Dropped(ev.mid, late, f"sent {len(late)} result(s) for tasks cancelled "
                                             f"meanwhile; dropped", routine=True))
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
        late = [t for t in dict.fromkeys(ev.task_ids) if t not in m.tasks and t in self.cancelled]
        if late:  # said running before the kill reached it: routine
            self.stats["cancelled_late"] += len(late)
            out.append(Dropped(ev.mid, late, f"reported {len(late)} task(s) running that were "
                                             f"cancelled meanwhile; ignored", routine=True))
            ev_ids = [t for t in ev.task_ids if t not in late]
        else:
            ev_ids = list(ev.task_ids)
        if len(mine) < len(ev_ids):
            n = len(ev_ids) - len(mine)
            self.stats["foreign_running"] += n
            others, first = [], set(mine)  # its own once each; strangers and repeats not
            for t in ev_ids:
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
        if m is None:  # alive but forgotten here: ask it to register (once a period)
            last = self.asked.get(ev.mid)
            if last is None or ev.now - last >= self.period:
                if len(self.asked) >= MAX_ASKED:
                    self.asked.clear()
                self.asked[ev.mid] = ev.now
                out.append(AskRegister(ev.mid))
            return out
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

    # --------------------------------------------------------- cancelling
    def _cancel(self, ev: CancelRequested) -> list:
        """Cancelled at the service: drop the tasks wherever they are here; a
        manager holding one (booked, or held and claimed when it registered) is
        told to kill it and gets its credit back now (no result will come; a late
        one is refused as not dispatched to it).  An id not here yet is
        remembered, so the task is dropped when it arrives."""
        ids = set(ev.task_ids)
        if not ids:
            return []
        if self.pending and any(t.task_id in ids for t in self.pending):
            self.pending = deque(t for t in self.pending if t.task_id not in ids)
        to_kill: dict[bytes, list[str]] = {}
        for mid, m in self.managers.items():
            if m.tasks and not ids.isdisjoint(m.tasks):
                for tid in [tid for tid in m.tasks if tid in ids]:
                    del m.tasks[tid]
                    m.credits += 1
                    to_kill.setdefault(mid, []).append(tid)
        for tid in ids:
            self.parked.pop(tid, None)
            self.early.pop(tid, None)
            self.lost_from.pop(tid, None)
            self.said_waiting.discard(tid)
            holder = self.awaiting.pop(tid, None) or self.refused.pop(tid, None)
            owner = self.managers.get(holder) if holder is not None else None
            if owner is not None and holder is not None:  # it holds the task, uncounted here
                owner.credits += 1
                to_kill.setdefault(holder, []).append(tid)
            self._remember_cancelled(tid)
        self.stats["cancelled"] += len(ids)
        return [SendCancel(mid, tids) for mid, tids in to_kill.items()]

    def _remember_cancelled(self, tid: str) -> None:
        cancelled = self.cancelled
        cancelled[tid] = None
        if len(cancelled) > MAX_CANCELLED:
            del cancelled[next(iter(cancelled))]

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
        last, self.last_tick = self.last_tick, now
        if self.stall_after is not None and last is not None and now - last > self.stall_after:
            for m in self.managers.values():  # we were not listening: not their silence
                m.last_heard = max(m.last_heard, now)
            out.append(Stalled(now - last))
        for mid, m in list(self.managers.items()):
            if now - m.last_heard > self.threshold:
                del self.managers[mid]
                self._forget_holds(mid)
                self.received.pop(mid, None)
                self.capacity.pop(mid, None)
                self.hand_started.discard(mid)
                retry, failed = lost_manager_tasks(m, self.max_retries, now)
                for t in retry:  # refunded if it comes back holding them
                    self.lost_from[t.task_id] = mid
                for r in failed:
                    self.lost_from.pop(r.task_id, None)
                    self._finished(r.task_id)
                if self.hold_lost > 0:  # held back a while for their manager
                    self.parked.update((t.task_id, t) for t in retry)
                else:
                    self.pending.extendleft(reversed(retry))
                out.append(Lost(m, now - m.last_heard, len(retry)))
                if failed:
                    out.append(Output([*failed]))
        if self.parked:
            self._release_parked(now)
        launching: set[str] = set()
        if self.pending and self.managers:
            out.extend(self._dispatch(launching))
        if self.unreported:  # queued behind busy workers: waiting for one to be free
            if self.managers:
                cancelled = self.cancelled
                queued = [t for t in self.unreported if t not in launching and t not in cancelled]
                if queued:
                    out.append(Output([StatusUpdate(WAITING_FOR_LAUNCH, queued)]))
                    self.said_waiting.update(queued)
            self.unreported = []  # with no manager, the agent said waiting-for-nodes
        if now - self.last_beat >= self.period:
            self.last_beat = now
            if self.managers:
                received = self.received
                out.append(SendHeartbeat(list(self.managers),
                                         {mid: received.get(mid, 0) for mid in self.managers}))
        if self.pending or self.parked or any(m.tasks for m in self.managers.values()):
            self.idle_since = now
        return out

    def _release_parked(self, now: float) -> None:
        """A lost manager's tasks go to any manager once ``hold_lost`` has passed
        with a manager there to take them (a cut manager usually comes back
        within that, and its tasks are then neither run twice nor retried)."""
        if not self.managers:
            self.release_at = None  # nobody could take them: the wait starts later
            return
        if self.release_at is None:
            self.release_at = now + self.hold_lost
        if now >= self.release_at:
            self.pending.extendleft(reversed(list(self.parked.values())))
            self.parked.clear()
            self.release_at = None

    def _dispatch(self, sent: set[str]) -> list:
        """Hand pending tasks to managers by credit (a manager that still holds
        a task for each of its workers only once :func:`refill_batch` credits
        are back); the tasks handed out are
        ``waiting-for-launch`` until their manager reports them running (the
        agent drops that update for tasks whose result follows within its
        status deferral, so short tasks cost no write).  ``sent`` gets their ids."""
        out: list = []
        launching: list[str] = []
        managers = self.managers
        lost_from, said = self.lost_from, self.said_waiting
        capacity = self.capacity
        hungry = [m for m in managers.values()
                  if m.credits >= refill_batch(capacity.get(m.manager_id, m.credits), m.workers)
                  or len(m.tasks) < m.workers]
        for mid, tasks in assign(self.pending, hungry).items():
            m = managers[mid]
            m.credits -= len(tasks)
            held = m.tasks
            for t in tasks:
                held[t.task_id] = t
                if t.task_id in said:
                    said.discard(t.task_id)
                else:
                    launching.append(t.task_id)
                if lost_from:
                    lost_from.pop(t.task_id, None)
            out.append(SendTasks(mid, tasks))
        if launching:
            out.append(Output([StatusUpdate(WAITING_FOR_LAUNCH, launching)]))
            if self.unreported:
                sent.update(launching)
        return out

