"""The endpoint agent's bookkeeping as a pure state machine (after
dask.distributed's ``worker_state_machine.py``): no sockets, no threads, no
clock.  The agent's I/O shell (:mod:`endpoint.agent`) feeds it events and
carries out the instructions it answers; everything here is unit-tested
without Redis or ZeroMQ (tests/test_agent_state.py).

What it holds: the task-stream entries taken and not yet acknowledged, the
unfinished tasks of each, the read cursor (pending entries first, then new
ones), the function-code and container-spec caches, and counters.

One task's path::

    next_read()                    -> Read(cursor, count, block_ms) | None (no room)
    EntriesRead(entries)           -> [Reclaiming] [Ack(empty/malformed)] CheckCancelled
                                      (or straight on, when none_cancelled)
    CancelledFlags(ids, flags)     -> [ForgetCancelled] [Ack] [FetchContainers | FetchFunctions]
    ContainerSpecs(specs)          -> [FetchFunctions]
    FunctionCodes(codes)           -> [Fail] [Report(waiting-for-nodes)] Dispatch
    ResultsReady(items)            -> Write(results, updates, ack_entries, forget)
    WriteCommitted(write)          -> (bookkeeping only: room for more reads)
    Outage()                       -> (the next read re-walks our pending entries)
    InFlightCancelled(task_ids)    -> [Ack] [ForgetCancelled] CancelTasks

Cancellation (issue 16).  The service puts a cancelled task's id in the
endpoint's cancelled set, whatever the task's state.  A task read after that
is dropped (``CheckCancelled``); one already in flight is found by the
agent's periodic check (:meth:`AgentState.in_flight` against the set) and
answered with ``InFlightCancelled``: it leaves the books at once (its
entry is acknowledged if nothing else of it is unfinished, and a result that
comes later is dropped like any result for a task not in flight) and
``CancelTasks`` has the interchange drop it or kill the worker running it.
An id leaves the cancelled set only with the acknowledgement of its entry
(after it, or in the same transaction): an entry re-read after a restart
still finds its cancelled tasks flagged, so a restarted endpoint never runs
them again.  Tasks found cancelled in a re-read (reclaimed) entry are passed
to the interchange too: a manager that outlived the agent may still run them.

A stage that needs an answer from Redis (``CheckCancelled``,
``FetchContainers``, ``FetchFunctions``) is always the last instruction of its
list, and the event answering it continues the same take; stages with
nothing to ask are skipped.  One take is in progress at a time (one reader).

Delivery is at-least-once (DESIGN decision 4): an entry is acknowledged only
by the ``Write`` that carries the result of its last unfinished task (or by an
``Ack`` when it has none left to run: empty, malformed, all cancelled).  A
lost manager's tasks are re-dispatched by the interchange and stay in flight
here; those out of retries come back as ``failed`` results like any other.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from endpoint.execute import failure
from funcx.errors import FunctionNotAllowed, SerializationError, SerializerNotAllowed
from funcx.protocol.error_codes import SERIALIZER_NOT_ALLOWED
from funcx.protocol.messages import ProtocolError, Result, StatusUpdate, Task
from funcx.protocol.states import TaskState
from funcx.protocol.streams import decode_task_entry
from funcx.serialize.choice import refusal

#: XREADGROUP id that asks for entries never delivered to any consumer
NEW = ">"
#: XREADGROUP id that walks this consumer's own pending entries from the start
PENDING = "0"
READ_BLOCK_MS = 1000  # how long a read for new entries waits for one


# ------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class EntriesRead:
    """What XREADGROUP returned: ``[(entry_id, fields), ...]`` (fields may be
    empty for an entry deleted while pending).  ``have_nodes``: whether the
    interchange has any manager to run tasks on right now."""

    entries: list
    have_nodes: bool = True
    #: the endpoint's cancelled set was empty when they were read (SCARD in the
    #: read's pipeline): none of them can be cancelled, so nothing is asked
    none_cancelled: bool = False


@dataclass(frozen=True, slots=True)
class CancelledFlags:
    """The answer to :class:`CheckCancelled`: one flag per task id, in order."""

    task_ids: list[str]
    flags: list


@dataclass(frozen=True, slots=True)
class ContainerSpecs:
    """The answer to :class:`FetchContainers`: container id -> JSON spec or None."""

    specs: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class FunctionCodes:
    """The answer to :class:`FetchFunctions`: function id -> code or None."""

    codes: dict[str, str | None]


@dataclass(frozen=True, slots=True)
class ResultsReady:
    """Results and status updates the interchange (or this agent) handed to the
    writer, in arrival order."""

    items: list


@dataclass(frozen=True, slots=True)
class WriteCommitted:
    """The transaction of ``write`` is in Redis."""

    write: Write


@dataclass(frozen=True, slots=True)
class Outage:
    """Redis was unreachable: re-check which entries we hold before new ones."""


@dataclass(frozen=True, slots=True)
class InFlightCancelled:
    """These tasks (ids from :meth:`AgentState.in_flight`) are in the
    endpoint's cancelled set: they were cancelled at the service while in flight."""

    task_ids: list[str]


Event = (EntriesRead | CancelledFlags | ContainerSpecs | FunctionCodes | ResultsReady
         | WriteCommitted | Outage | InFlightCancelled)


# ------------------------------------------------------------- instructions
@dataclass(frozen=True, slots=True)
class Read:
    """XREADGROUP at ``cursor`` (``">"``: new entries) for at most ``count``
    entries, blocking ``block_ms`` (None: do not block)."""

    cursor: str
    count: int
    block_ms: int | None


@dataclass(frozen=True, slots=True)
class Reclaiming:
    """Entries this consumer took before (an earlier run, or before an outage)
    and had not finished: they are being taken again (for the log)."""

    entry_ids: list[str]


@dataclass(frozen=True, slots=True)
class CheckCancelled:
    """Ask which of these tasks were cancelled while queued; answer
    :class:`CancelledFlags`."""

    task_ids: list[str]


@dataclass(frozen=True, slots=True)
class ForgetCancelled:
    """Remove these task ids from the cancelled set: they are dropped and their
    entries acknowledged (carried out after the :class:`Ack` before it)."""

    task_ids: list[str]


@dataclass(frozen=True, slots=True)
class CancelTasks:
    """Have the interchange drop these cancelled tasks, killing the workers that
    run any of them."""

    task_ids: list[str]


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledge and delete entries with nothing (left) to run.  ``dropped``:
    ``(entry_id, reason)`` of the malformed ones among them, to report."""

    entry_ids: list[str]
    dropped: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FetchContainers:
    """Fetch the specs of these containers; answer :class:`ContainerSpecs`."""

    container_ids: list[str]


@dataclass(frozen=True, slots=True)
class FetchFunctions:
    """Fetch the code of these functions; answer :class:`FunctionCodes`."""

    function_ids: list[str]


@dataclass(frozen=True, slots=True)
class Fail:
    """Failures decided here (not allowed, no code): hand them to the writer."""

    results: list[Result]


@dataclass(frozen=True, slots=True)
class Report:
    """Status updates decided here (waiting-for-nodes): hand them to the writer."""

    updates: list[StatusUpdate]


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Hand these tasks (function code and container spec attached) to the interchange."""

    tasks: list[Task]


@dataclass(frozen=True, slots=True)
class Write:
    """One transaction: append ``results`` (one entry) and ``updates``, and
    acknowledge and delete ``ack_entries`` (removing ``forget``, the cancelled
    tasks of those entries, from the cancelled set); then answer
    :class:`WriteCommitted`."""

    results: list[Result]
    updates: list[StatusUpdate]
    ack_entries: list[str]
    forget: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.results or self.updates or self.ack_entries)


Instruction = (Reclaiming | CheckCancelled | ForgetCancelled | Ack | FetchContainers
               | FetchFunctions | Fail | Report | Dispatch | Write | CancelTasks)


@dataclass(slots=True)
class _Take:
    """Newly read tasks on their way to dispatch (between events)."""

    tasks: list[Task]
    failed: list[Result]
    ack: list[str]
    dropped: list[tuple[str, str]]
    have_nodes: bool
    reclaimed: bool = False  # re-read entries: a manager may still hold their tasks


# ------------------------------------------------------------ the machine
class AgentState:
    """The agent's bookkeeping.  Not thread-safe: its owner serializes calls
    (the agent holds one lock around every call)."""

    def __init__(self, max_inflight: int, read_count: int,
                 allowed_functions: Iterable[str] | None = None,
                 allowed_serializers: frozenset[str] | None = None):
        """``allowed_serializers``: the strategy identifiers a task's function and
        arguments may use (``Config.allowed_serializer_ids``; None: any)."""
        self.max_inflight = max_inflight
        self.read_count = read_count
        self.allowed = None if allowed_functions is None else frozenset(allowed_functions)
        self.allowed_serializers = allowed_serializers
        self.entry_of: dict[str, str] = {}  # task id -> stream entry id (taken, unfinished)
        self.open_entries: dict[str, set[str]] = {}  # entry id -> its unfinished task ids
        self.functions: dict[str, str] = {}  # function id -> code (never changes)
        self.containers: dict[str, dict] = {}  # container id -> {"type", "location"}
        #: entry id -> its cancelled task ids, forgotten when the entry is acknowledged
        self.cancelled_of: dict[str, set[str]] = {}
        self.cursor = PENDING  # first re-read what a previous run took and did not finish
        self.stats = {"writes": 0, "results": 0, "reads": 0, "tasks": 0, "cancelled": 0}
        self._take: _Take | None = None
        self._handlers: dict[type, Callable[[Any], list]] = {
            EntriesRead: self._entries_read, CancelledFlags: self._cancelled_flags,
            ContainerSpecs: self._container_specs, FunctionCodes: self._function_codes,
            ResultsReady: self._results_ready, WriteCommitted: self._write_committed,
            Outage: self._outage, InFlightCancelled: self._in_flight_cancelled,
        }

    # ----------------------------------------------------------- queries
    @property
    def inflight(self) -> int:
        """Tasks taken and not finished (what back-pressure and scaling count)."""
        return len(self.entry_of)

    def in_flight(self) -> list[str]:
        """The ids of the tasks taken and not finished (to check for cancellation)."""
        return list(self.entry_of)

    def next_read(self) -> Read | None:
        """The next read to make, or None while ``max_inflight`` tasks are held."""
        room = self.max_inflight - len(self.entry_of)
        if room <= 0:
            return None
        return Read(self.cursor, max(1, min(self.read_count, room)),
                    READ_BLOCK_MS if self.cursor == NEW else None)

    def handle(self, event: Event) -> list[Instruction]:
        return self._handlers[type(event)](event)

    # ----------------------------------------------------------- reading
    def _outage(self, _: Outage) -> list:
        self.cursor = PENDING
        return []

    def _entries_read(self, ev: EntriesRead) -> list:
        if self._take is not None:
            raise RuntimeError("entries read while an earlier take is unfinished")
        entries = ev.entries
        out: list = []
        reclaimed = self.cursor != NEW
        if reclaimed:  # walking our own pending entries
            if not entries:
                self.cursor = NEW
                return out
            self.cursor = entries[-1][0]
            entries = [e for e in entries if e[0] not in self.open_entries]
            if entries:
                out.append(Reclaiming([e[0] for e in entries]))
        if not entries:
            return out
        self.stats["reads"] += 1
        take = _Take([], [], [], [], ev.have_nodes, reclaimed)
        allowed, open_entries, entry_of = self.allowed, self.open_entries, self.entry_of
        for entry_id, fields in entries:
            if entry_id in open_entries:
                continue  # re-read after an outage: we are already on it
            if not fields:  # deleted while pending: nothing to run
                take.ack.append(entry_id)
                continue
            try:
                batch = decode_task_entry(fields)
            except ProtocolError as e:
                take.ack.append(entry_id)
                take.dropped.append((entry_id, str(e)))
                continue
            open_entries[entry_id] = {t.task_id for t in batch}
            for task in batch:
                entry_of[task.task_id] = entry_id
                if allowed is not None and task.function_id not in allowed:
                    take.failed.append(failure(task, FunctionNotAllowed(task.function_id)))
                else:
                    take.tasks.append(task)
        if take.tasks and not ev.none_cancelled:  # drop tasks cancelled while queued
            self._take = take
            out.append(CheckCancelled([t.task_id for t in take.tasks]))
            return out
        return out + self._prepare(take)

    def _cancelled_flags(self, ev: CancelledFlags) -> list:
        take = self._taking()
        gone = [t.task_id for t, f in zip(take.tasks, ev.flags) if f]
        if not gone:
            return self._prepare(take)
        take.tasks = [t for t, f in zip(take.tasks, ev.flags) if not f]
        acks, forget = self._drop_cancelled(gone)
        out: list = [Ack(take.ack + acks, take.dropped)] if take.ack or acks else []
        take.ack, take.dropped = [], []
        if forget:
            out.append(ForgetCancelled(forget))
        if take.reclaimed:  # a manager that outlived an earlier agent may run them
            out.append(CancelTasks(gone))
        return out + self._prepare(take)

    def _drop_cancelled(self, task_ids: list[str]) -> tuple[list[str], list[str]]:
        """Take cancelled tasks off the books: the entries left with nothing to
        run (to acknowledge) and the cancelled ids to forget with them; the
        others' cancelled ids wait for their entry's acknowledgement."""
        acks: list[str] = []
        forget: list[str] = []
        for task_id in task_ids:
            entry = self.entry_of.pop(task_id, None)
            if entry is None:
                continue
            self.stats["cancelled"] += 1
            left = self.open_entries.get(entry)
            if left is not None:
                left.discard(task_id)
            if not left:
                self.open_entries.pop(entry, None)
                acks.append(entry)
                forget.extend(sorted(self.cancelled_of.pop(entry, set())))
                forget.append(task_id)
            else:
                self.cancelled_of.setdefault(entry, set()).add(task_id)
        return acks, forget

    def _in_flight_cancelled(self, ev: InFlightCancelled) -> list:
        """Cancelled while in flight: off the books now (see the module docstring)."""
        ids = [t for t in dict.fromkeys(ev.task_ids) if t in self.entry_of]
        if not ids:
            return []
        acks, forget = self._drop_cancelled(ids)
        out: list = [Ack(acks)] if acks else []
        if forget:
            out.append(ForgetCancelled(forget))
        return [*out, CancelTasks(ids)]

    def _prepare(self, take: _Take) -> list:
        out: list = []
        if take.ack:
            out.append(Ack(take.ack, take.dropped))
            take.ack, take.dropped = [], []
        wanted = sorted({t.container_id for t in take.tasks if t.container_id}
                        - self.containers.keys())
        if wanted:
            self._take = take
            out.append(FetchContainers(wanted))
            return out
        return out + self._with_containers(take)

    def _container_specs(self, ev: ContainerSpecs) -> list:
        take = self._taking()
        for c, spec in ev.specs.items():
            if spec:
                try:
                    self.containers[c] = json.loads(spec)
                except ValueError:
                    self.containers[c] = {}
        return self._with_containers(take)

    def _with_containers(self, take: _Take) -> list:
        """Give container tasks their image spec (copied for us by the service)."""
        if self.containers:
            for t in take.tasks:
                if t.container_id:
                    t.container_spec = self.containers.get(t.container_id, {})
        missing = sorted({t.function_id for t in take.tasks} - self.functions.keys())
        if missing:
            self._take = take
            return [FetchFunctions(missing)]
        return self._finish(take)

    def _function_codes(self, ev: FunctionCodes) -> list:
        take = self._taking()
        self.functions.update({f: c for f, c in ev.codes.items() if c})
        return self._finish(take)

    def _finish(self, take: _Take) -> list:
        self._take = None
        ready, failed, functions = [], take.failed, self.functions
        entry_of = self.entry_of
        for t in take.tasks:
            if t.task_id not in entry_of:  # cancelled while this take was in progress
                continue
            code = functions.get(t.function_id)
            refused = None if code is None else refusal(code, t.payload, self.allowed_serializers)
            if code is None:
                failed.append(failure(t, SerializationError(
                    f"the code of function {t.function_id} is not available to this endpoint")))
            elif refused:  # refused alone: the tasks beside it run
                failed.append(failure(t, SerializerNotAllowed(refused),
                                      error_code=SERIALIZER_NOT_ALLOWED))
            else:
                t.function_code = code
                ready.append(t)
        out: list = []
        if failed:
            out.append(Fail(failed))
        self.stats["tasks"] += len(ready)
        if ready:
            if not take.have_nodes:  # nothing to run them on yet
                out.append(Report([StatusUpdate(TaskState.WAITING_FOR_NODES.value,
                                                [t.task_id for t in ready])]))
            out.append(Dispatch(ready))
        return out

    def _taking(self) -> _Take:
        if self._take is None:
            raise RuntimeError("an answer arrived with no take in progress")
        return self._take

    # ----------------------------------------------------------- writing
    def _results_ready(self, ev: ResultsReady) -> list:
        """Plan one transaction: the results (a late duplicate, or a result for a
        task not in flight, is dropped: the first result stands), one status
        update per status without the tasks whose result is in this very batch,
        and every entry whose unfinished tasks all have their result here."""
        results: list[Result] = []
        by_status: dict[str, list[str]] = {}
        seen: set[str] = set()
        entry_of = self.entry_of
        for item in ev.items:
            if isinstance(item, Result):
                if item.task_id in entry_of and item.task_id not in seen:
                    results.append(item)
                    seen.add(item.task_id)
            elif isinstance(item, StatusUpdate):
                by_status.setdefault(item.status, []).extend(item.task_ids)
        updates = [StatusUpdate(st, [t for t in ids if t not in seen])
                   for st, ids in by_status.items()]
        updates = [u for u in updates if u.task_ids]
        done: dict[str, int] = {}
        for r in results:
            entry = entry_of[r.task_id]
            done[entry] = done.get(entry, 0) + 1
        open_entries, cancelled_of = self.open_entries, self.cancelled_of
        finished = [e for e, n in done.items() if n == len(open_entries.get(e, ()))]
        forget = [t for e in finished for t in sorted(cancelled_of.get(e, ()))]
        return [Write(results, updates, finished, forget)]

    def _write_committed(self, ev: WriteCommitted) -> list:
        w = ev.write
        entry_of, open_entries = self.entry_of, self.open_entries
        for r in w.results:
            entry = entry_of.pop(r.task_id, None)
            if entry is not None:
                left = open_entries.get(entry)
                if left is not None:
                    left.discard(r.task_id)
                    if not left:
                        del open_entries[entry]
        for entry in w.ack_entries:  # already empty; gone from the stream either way
            open_entries.pop(entry, None)
            self.cancelled_of.pop(entry, None)
        self.stats["writes"] += 1
        self.stats["results"] += len(w.results)
        return []
