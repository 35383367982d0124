"""A manager: runs inside a provider block on a compute node, connects to the
interchange over ZeroMQ, forks N worker processes, hands them tasks and
returns results in batches.

Flow control is by credit: the manager announces ``capacity`` (workers +
prefetch) when it registers, and every result it returns gives one credit
back, so the interchange never sends more than the manager can hold.

The per-task path is kept short (issue 20): the workers are looked at once
per loop step, not once per queued task; a task is reported running only once
it has run ``FUNCX_MANAGER_RUNNING_DEFER_S`` (a shorter one goes straight to
its result, with no RUNNING message); while workers still run tasks, results
wait up to ``FUNCX_MANAGER_RESULT_LINGER_S`` to go up together (the last one
goes at once); kept results are found by task id (:mod:`endpoint.unacked`).
The link to the interchange is :mod:`endpoint.manager_link`.

A worker that dies fails only its task (``WorkerLost``) and is replaced; a
task past its walltime is killed with its worker (``TaskTimeout``).  A task
the interchange cancels (``CANCEL``, issue 16) is dropped from the queue, or
its worker's process group is killed (SIGTERM, then SIGKILL after a grace)
and a replacement worker started; the other workers and tasks carry on, and
no result is sent for it.  The worker processes are :mod:`endpoint.worker_pool`.

Links that come back (issue 15): a manager that hears nothing from the
interchange for longer than ``heartbeat_threshold`` does not exit.  It keeps
its workers, its running and queued tasks and the results it could not be
sure were delivered, and reconnects — a fresh DEALER socket, the same
manager id and CURVE keys — and registers again, naming the tasks it holds
(``Register.held``); while the interchange stays silent it tries again with
back-off (doubling from the threshold up to ``reconnect_max``), without end.
Each result is kept until the interchange's heartbeat acknowledges it
(``Heartbeat.acked`` counts the results it received) and is sent again after
a reconnect; the interchange records one result per task whatever arrives
twice (:mod:`endpoint.interchange_state`).  A manager still ends on SIGTERM,
on the interchange's SHUTDOWN (sent only to the endpoint's own blocks), and —
a block on the endpoint's host — when the endpoint daemon that started it is
gone.

A manager started by hand (``funcx-endpoint manager --addr ... --keys ...``,
``--hand-started``) says so when it registers: the endpoint never tells it
to shut down, so it outlives ``funcx-endpoint restart`` and ``stop`` and
reconnects to the next start (the interchange keeps its port).

Launch and trust (issue 12):

* Its command line is an :class:`endpoint.launch.ManagerLaunch`.  It proves it
  belongs to the endpoint with CurveZMQ: ``--curve-keys`` names a 0600 file
  holding the interchange's public key and the manager keypair
  (:mod:`endpoint.curve`).  Only that path is on the command line; the keys
  are never in ``ps``, a submit script, a worker's environment or a log.
  A manager told an ``ipc://`` address (a block on the endpoint's own host,
  :mod:`endpoint.local_socket`) connects without CURVE: the 0700 directory
  of that socket is the proof.
* Nothing a submitter sends can crash it: a task's walltime is read
  defensively (missing or bad: the endpoint's default) and clamped to the
  owner's ``max_walltime``; a task whose resource specification is otherwise
  malformed fails alone with a clear error; every message is handled alone.
* Workers run with a scrubbed environment (no ``FUNCX_*`` settings or
  credentials beyond what a worker needs: :mod:`endpoint.worker_env`) in the
  ``working_dir`` it is given — an endpoint gives its config's, by default
  ``tasks_working_dir`` in the endpoint's directory, as the funcX reference
  documents — or, without one (a manager started by hand), a per-block
  temporary directory outside ``FUNCX_HOME``.  (A function runs as the
  owner's Unix user, so it can open any path the owner can.)
"""
from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections import deque
from typing import cast

import zmq

from endpoint import blobs
from endpoint.curve import KeyFileError, ManagerKeys
from endpoint.execute import failure
from endpoint.hardware_report import placement_plan, report
from endpoint.launch import ManagerLaunch
from endpoint.manager_link import InterchangeLink
from endpoint.mpi import NodesExceeded, mode_for
from endpoint.scheduling import SlotView, pick_worker, task_walltime
from endpoint.unacked import MAX_UNACKED, Unacked
from endpoint.worker_pool import WorkerPool, WorkerSlot
from funcx.defaults import setting
from funcx.errors import TaskTimeout, WorkerLost
from funcx.lifecycle import die_with_parent
from funcx.protocol.error_codes import MPI_NODES_EXCEEDED, RESOURCE_SPEC_INVALID
from funcx.protocol.messages import (
    Kind,
    ProtocolError,
    Result,
    Task,
    pack,
    pack_tasks,
    resource_specification,
    unpack,
    unpack_results,
    unpack_tasks,
)

log = logging.getLogger("funcx.manager")

#: how often a manager looks for workers that died (a waitpid per worker)
REAP_EVERY_S = 0.02
#: plain ints (pyzmq's enum flags cost an object per use, several per message)
EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)

class Manager(InterchangeLink):
    def __init__(self, launch: ManagerLaunch, keys: ManagerKeys | None = None):
        """Connect to ``launch.addr`` as a CURVE client (``keys``, default: read
        from ``launch.curve_keys``) and prepare ``launch.workers`` worker slots."""
        self.launch = launch
        self.id = launch.manager_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self.block_id = launch.block_id
        self.plan = placement_plan(launch)  # each worker's accelerator and CPUs
        self.n_workers = len(self.plan.placements)
        self.prefetch = launch.prefetch
        self.period, self.threshold = launch.heartbeat_period, launch.heartbeat_threshold
        self.default_walltime = launch.walltime
        self.max_walltime = launch.max_walltime
        #: MPI mode: the block's nodes, held by the MPI tasks running (endpoint.mpi)
        self.mpi = mode_for(launch.mpi_launcher, launch.nodes_per_block, socket.gethostname(),
                            os.environ)
        self.worker_mode = launch.worker_mode
        self.supervisor = launch.supervisor
        self.last_supervisor_check = 0.0
        self.tmp = tempfile.mkdtemp(prefix="funcx-mgr-")
        self.own_workdir = not launch.working_dir
        self.single_use = launch.single_use
        if launch.working_dir:
            self.working_dir = launch.working_dir
            try:  # e.g. tasks_working_dir in the endpoint's directory
                os.makedirs(self.working_dir, mode=0o700, exist_ok=True)
            except OSError as e:  # a node that does not share that file system
                log.warning("cannot use the working directory %s (%s); using a temporary "
                            "one", self.working_dir, e)
                self.own_workdir = True
        if self.own_workdir:  # per block, outside FUNCX_HOME; removed at shutdown
            block = re.sub(r"[^A-Za-z0-9_.-]", "_", self.block_id)[:32]
            self.working_dir = tempfile.mkdtemp(prefix=f"funcx-block-{block}-")
        self.keys = keys or ManagerKeys.load(launch.curve_keys)
        self.hand_started = launch.hand_started
        self.reconnect_max = max(launch.reconnect_max, launch.heartbeat_threshold)
        self.ctx = zmq.Context()
        self.poller: zmq.Poller | None = None
        self.up, self.mon = self._connect()
        self.handshakes = 0  # CURVE handshakes completed on self.up
        self.worker_addr = f"ipc://{self.tmp}/workers"
        self.down = self.ctx.socket(zmq.ROUTER)
        self.down.setsockopt(zmq.LINGER, 0)
        self.down.bind(self.worker_addr)
        self.pool = WorkerPool(self.worker_addr, self.working_dir, self.tmp, self.n_workers,
                               shlex.split(launch.worker_cmd_prefix), launch.worker_mode,
                               launch.container_runtime, launch.container_options,
                               launch.mem_per_worker, placements=self.plan.placements)
        self.hardware = report(self.plan, launch.accelerators)  # sent when it registers
        self.slots: list[WorkerSlot] = self.pool.slots
        self.specs = self.pool.specs
        self.by_identity = self.pool.by_identity
        self.pending: deque[Task] = deque()
        self.results: list[Result] = []
        #: task id -> when it started, until reported running (after RUNNING_DEFER_S:
        #: a task that finishes sooner is never reported running, its result says it all)
        self.running: dict[str, float] = {}
        self.running_defer = float(setting("MANAGER_RUNNING_DEFER_S"))
        #: results wait this long for others while workers still run (results_due)
        self.result_linger = float(setting("MANAGER_RESULT_LINGER_S"))
        self.results_since: float | None = None  # when the oldest held result came
        self.last_reap = 0.0
        self.stopping = False
        self.last_heard = time.monotonic()
        self.last_beat = 0.0
        self.dropped = 0  # messages refused (bad, or not for us)
        self.sent = 0  # results sent since start (the count the interchange acknowledges)
        self.unacked = Unacked()  # (number, result) by task id, oldest first
        #: task id -> the re-run it was last sent for (retried tasks only; bounded)
        self.reruns: dict[str, int] = {}
        self.reconnects = 0  # times it reconnected
        self.silent_since: float | None = None  # first missed threshold of this outage
        self.next_reconnect = 0.0  # monotonic time of the next try while silent
        self.backoff = self.threshold
        self.last_register = 0.0  # monotonic time of the last REGISTER sent

    # ---------------------------------------------------------------- workers
    def reap(self) -> None:
        """Fail the task of any worker that died, and replace the worker."""
        for slot, task, detail in self.pool.reap(self.stopping):
            log.warning("worker %s died (%s) running task %s", slot.identity, detail,
                        task.task_id)
            lost = failure(task, WorkerLost(slot.identity.decode(), detail))
            lost.stdout, lost.stderr = self.pool.leftover_output(slot)
            self.results.append(lost)
            self.running.pop(task.task_id, None)

    def cancel(self, task_ids: list[str]) -> None:
        """The interchange cancelled these tasks: drop those queued here, kill
        the workers running the others (a replacement starts at once), and send
        nothing about any of them (not "running", not a result)."""
        ids = set(task_ids)
        before = len(self.pending)
        self.pending = deque(t for t in self.pending if t.task_id not in ids)
        now = time.monotonic()
        killed = [(slot.task.task_id, self.pool.cancel(slot, now)) for slot in self.slots
                  if slot.task is not None and slot.task.task_id in ids]
        self.running = {t: at for t, at in self.running.items() if t not in ids}
        self.results = [r for r in self.results if r.task_id not in ids]
        for tid, pid in killed:
            log.info("task %s cancelled: its worker (pid %s) is killed and replaced", tid, pid)
        if before > len(self.pending):
            log.info("%d queued task(s) cancelled", before - len(self.pending))

    def enforce_walltime(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.task is not None and slot.deadline is not None and now > slot.deadline:
                log.warning("task %s exceeded its walltime of %ss", slot.task.task_id,
                            slot.walltime)
                w = slot.walltime or 0.0
                timeout = failure(slot.task, TaskTimeout(
                    int(w) if w.is_integer() else w))  # "1 s", not "1.0 s"
                self.running.pop(slot.task.task_id, None)
                slot.task, slot.ready = None, False  # no new task for a dying worker
                self.pool.kill_now(slot)  # reap() replaces the worker
                # what it printed so far (its files, before the slot's next task)
                timeout.stdout, timeout.stderr = self.pool.leftover_output(slot)
                self.results.append(timeout)

    def container_of(self, task: Task) -> str:
        """The container a task runs in here ("" when containers are off or unknown)."""
        if self.worker_mode == "no_container" or not task.container_spec.get("location"):
            return ""
        return task.container_id

    def dispatch(self) -> None:
        """Hand pending tasks to idle workers of their container, restarting
        idle workers into another container when none is warm.  The workers
        are looked at once per call (a waitpid each), not once per task: with
        every worker busy, the queue is left as it is at once."""
        if not self.pending:
            return
        views = [SlotView(s.index, s.container,
                          s.ready and s.proc is not None and s.proc.poll() is None,
                          s.task is not None) for s in self.slots]
        idle = sum(1 for v in views if v.ready and not v.busy)
        if not idle:  # all busy or starting: every task would wait
            return
        if self.mpi is not None:  # nodes of finished tasks are free again
            self.mpi.pool.keep_only(s.task.task_id for s in self.slots if s.task is not None)
        waiting: deque[Task] = deque()
        while self.pending:
            if not idle:  # the rest wait, in order
                waiting.extend(self.pending)
                self.pending.clear()
                break
            task = self.pending.popleft()
            try:
                container = self.container_of(task)
                action, index = pick_worker(container, views)
                if index is None:  # "wait": one is starting, or all are busy
                    waiting.append(task)
                    continue
                if action == "send":
                    if self.mpi is not None and not self.claim_nodes(task):
                        waiting.append(task)  # its nodes are busy: it waits for them
                        continue
                    views[index].busy = True
                    idle -= 1
                    self.send_to(self.slots[index], task)
                    continue
                if action == "respawn":  # that idle worker starts again, in `container`
                    views[index] = SlotView(index, container, False, False)
                    idle -= 1
                    self.pool.respawn_as(self.slots[index], container, task.container_spec)
                waiting.append(task)
            except Exception as e:  # noqa: BLE001 - this task fails, the others go on
                log.exception("cannot start task %s", task.task_id)
                self.results.append(failure(task, RuntimeError(
                    f"the endpoint could not start this task: {type(e).__name__}: {e}")))
        self.pending = waiting

    def claim_nodes(self, task: Task) -> bool:
        """MPI mode: hold the nodes ``task`` asks for and give it the launcher's
        variables ($PARSL_MPI_PREFIX...); False while too few nodes are free."""
        assert self.mpi is not None
        env = self.mpi.claim(task.task_id, task.resource_specification)
        if env is None:
            return False
        task.env = env
        return True

    def walltime_of(self, task: Task) -> float | None:
        """The task's walltime: its request if sane, else the default; at most
        the owner's max_walltime."""
        return task_walltime(task.resource_specification, self.default_walltime,
                             self.max_walltime)

    def send_to(self, slot: WorkerSlot, task: Task) -> None:
        slot.task = task
        slot.walltime = self.walltime_of(task)
        slot.deadline = time.monotonic() + slot.walltime if slot.walltime else None
        log.debug("task %s to worker %d%s", task.task_id, slot.index,
                  f" (container {slot.container})" if slot.container else "")
        blobs.send(self.down, [slot.identity, *pack_tasks([task])])  # large frames: no copy
        self.running[task.task_id] = time.monotonic()

    # -------------------------------------------------------------- messages
    def admit(self, task: Task) -> bool:
        """Queue ``task`` unless its resource specification is malformed (then
        it fails alone, with the offending field named)."""
        spec = task.resource_specification
        if "walltime" in spec and task_walltime(spec, None, None) is None:
            log.warning("task %s asks for an unusable walltime; the endpoint default applies",
                        task.task_id)
        try:
            resource_specification({k: v for k, v in spec.items() if k != "walltime"})
        except ProtocolError as e:
            log.warning("task %s refused: %s", task.task_id, e)
            self.results.append(failure(task, ValueError(
                f"the endpoint refused this task's resource_specification: {e}")))
            return False
        refusal = self.mpi.refusal(spec) if self.mpi is not None else None
        if refusal is not None:  # more nodes than this block has: it could never start
            log.warning("task %s refused: %s", task.task_id, refusal)
            self.results.append(failure(task, refusal, error_code=(
                MPI_NODES_EXCEEDED if isinstance(refusal, NodesExceeded)
                else RESOURCE_SPEC_INVALID)))
            return False
        return True

    def on_interchange(self, frames: list[bytes]) -> None:
        self.last_heard = time.monotonic()
        if self.silent_since is not None:
            log.info("the interchange answers again after %.1fs",
                     self.last_heard - self.silent_since)
            self.silent_since, self.backoff = None, self.threshold
        msg = unpack(frames)
        if msg.kind == Kind.TASKS:
            busy = {s.task.task_id for s in self.slots if s.task is not None}
            busy.update(t.task_id for t in self.pending)
            unacked, reruns = self.unacked, self.reruns
            for t in unpack_tasks(msg):
                if t.task_id in busy:  # already ours (a resend): never run it twice
                    log.warning("task %s was sent again; it runs here already", t.task_id)
                elif (done := unacked.get(t.task_id)) is not None \
                        and t.rerun == reruns.get(t.task_id, 0):
                    self.results.append(done)  # finished here: its result, again
                elif self.admit(t):  # new, or a retry the interchange ordered (endpoint.retries)
                    if t.rerun:
                        reruns[t.task_id] = t.rerun
                        if len(reruns) > MAX_UNACKED:
                            del reruns[next(iter(reruns))]
                    self.pending.append(t)
        elif msg.kind == Kind.CANCEL:
            self.cancel(msg.header)
        elif msg.kind == Kind.SHUTDOWN:
            log.info("interchange asked to shut down")
            self.stopping = True
        elif msg.kind == Kind.REREGISTER:  # it declared us lost while we were away
            if time.monotonic() - self.last_register >= self.period:
                log.warning("the interchange no longer knows this manager; registering again")
                self.register_again()
        elif msg.kind == Kind.HEARTBEAT:
            if msg.header is not None and msg.header.acked is not None:
                self.acknowledged(msg.header.acked)
        else:
            self.dropped += 1
            log.warning("the interchange sent a %s message; dropped", msg.kind.decode())

    def on_worker(self, frames: list[bytes]) -> None:
        identity, rest = frames[0], frames[1:]
        slot = self.by_identity.get(identity)
        if slot is None:
            return  # a replaced worker's late message
        msg = unpack(rest)
        if msg.kind == Kind.READY:
            slot.ready = True
        elif msg.kind == Kind.RESULTS:
            for r in unpack_results(msg):
                if slot.task is not None and r.task_id == slot.task.task_id:
                    r.details.setdefault("manager", self.id)
                    r.task_group_id = slot.task.task_group_id
                    self.results.append(r)
                    self.running.pop(r.task_id, None)  # its result says it ran
                    log.debug("task %s done on worker %d", r.task_id, slot.index)
                    slot.task, slot.deadline = None, None
                    if self.single_use and slot.container and not self.stopping:
                        # singularity_single_use: a fresh container for the next task
                        self.pool.respawn_as(slot, slot.container, self.specs[slot.container])
                else:
                    self.dropped += 1
                    log.warning("worker %s sent a result for a task it is not running; dropped",
                                identity[:32].decode(errors="replace"))

    def _handle(self, origin: str, handler, frames: list[bytes]) -> None:
        """Handle one message; whatever it holds, log it with its origin and go on."""
        try:
            handler(frames)
        except ProtocolError as e:
            self.dropped += 1
            log.error("dropping bad message from %s: %s", origin, e)
        except Exception as e:  # noqa: BLE001 - one message never stops the manager
            self.dropped += 1
            log.exception("dropping message from %s that could not be handled: %s", origin,
                          type(e).__name__)

    def flush(self) -> None:
        """Report running the tasks started at least ``running_defer`` ago that
        have not finished (oldest first), and send the results."""
        if self.running:
            due = time.monotonic() - self.running_defer
            started = [t for t, at in self.running.items() if at <= due]
            if started and self.send_up(pack(Kind.RUNNING, started)):
                for t in started:
                    del self.running[t]
        if self.results and self.results_due() <= 0 and self.send_results(self.results):
            self.results, self.results_since = [], None

    def results_due(self) -> float:
        """Seconds until the results held here go (0: now).  While a worker
        still runs a task, more results are coming: they wait up to
        ``result_linger`` to leave together (one message, not one each); the
        last result, or any when stopping, goes at once."""
        now = time.monotonic()
        if self.results_since is None:
            self.results_since = now
        if self.stopping or not any(s.task is not None for s in self.slots):
            return 0.0
        return max(0.0, self.results_since + self.result_linger - now)

    def next_wake(self, tick: float) -> float:
        """How long the loop may wait for a message: ``tick``, or less when a
        task's running report or the held results fall due sooner (what is
        due and not sent, the link being full, waits for the next tick)."""
        wake = tick
        if self.results:
            due_in = self.results_due()
            wake = wake if due_in <= 0 else min(wake, due_in)
        if self.running:
            due_in = next(iter(self.running.values())) + self.running_defer - time.monotonic()
            wake = wake if due_in <= 0 else min(wake, due_in)
        return wake

    # ------------------------------------------------------------------- loop
    def _step(self, poller: zmq.Poller, tick: float) -> None:
        for sock, _ in poller.poll(math.ceil(self.next_wake(tick) * 1000)):
            if sock is self.up:
                while cast(int, self.up.getsockopt(EVENTS)) & POLLIN:
                    self._handle("the interchange", self.on_interchange,
                                 blobs.recv(self.up))
            elif sock is self.mon:
                self.on_handshake()
            else:
                while cast(int, self.down.getsockopt(EVENTS)) & POLLIN:
                    frames = blobs.recv(self.down)
                    self._handle(f"worker {frames[0][:32].decode(errors='replace')}",
                                 self.on_worker, frames)
        now = time.monotonic()
        if now - self.last_reap >= REAP_EVERY_S:
            self.last_reap = now
            self.reap()
        self.pool.tend(now)
        self.enforce_walltime()
        self.dispatch()
        self.flush()
        self.heartbeat()

    def run(self) -> None:
        for slot in self.slots:
            self.pool.spawn(slot)
        self.register()
        poller = self.poller = zmq.Poller()
        poller.register(self.up, zmq.POLLIN)
        poller.register(self.mon, zmq.POLLIN)
        poller.register(self.down, zmq.POLLIN)
        tick = min(0.2, self.period)
        try:
            while not self.stopping:
                try:
                    self._step(poller, tick)
                except Exception:  # noqa: BLE001 - log and keep the other tasks running
                    log.exception("manager loop error; continuing")
                    time.sleep(tick)
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.pool.shutdown()
        self._close_up(linger=int(self.up.getsockopt(zmq.LINGER)))
        self.down.close()
        self.ctx.term()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.own_workdir:
            shutil.rmtree(self.working_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    launch = ManagerLaunch.from_argv(argv)
    if not launch.hand_started:
        # die with the process that launched this manager (the block's script
        # under a LocalProvider, the job's shell under a batch scheduler); SIGTERM
        # so the manager still ends its workers and removes its directories.  A
        # hand-started manager's lifetime is its owner's (SIGTERM, or kill).
        die_with_parent(signal.SIGTERM)
    logging.basicConfig(level=logging.DEBUG if launch.debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s manager %(levelname)s %(message)s")
    try:
        mgr = Manager(launch)
    except KeyFileError as e:
        log.error("%s", e)
        sys.exit(2)

    def _stop(*_):
        mgr.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    mgr.run()


if __name__ == "__main__":
    main()
