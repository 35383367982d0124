"""A manager: runs inside a provider block on a compute node, connects to the
interchange over ZeroMQ, forks N worker processes, hands them tasks and
returns results in batches.

Flow control is by credit: the manager announces ``capacity`` (workers +
prefetch) when it registers, and every result it returns gives one credit
back, so the interchange never sends more than the manager can hold.

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

import zmq

from endpoint import blobs
from endpoint.curve import KeyFileError, ManagerKeys
from endpoint.execute import failure
from endpoint.hardware_report import available_memory, placement_plan, report
from endpoint.launch import ManagerLaunch
from endpoint.mpi import NodesExceeded, mode_for
from endpoint.scheduling import SlotView, pick_worker, task_walltime
from endpoint.worker_pool import WorkerPool, WorkerSlot
from funcx.errors import TaskTimeout, WorkerLost
from funcx.lifecycle import die_with_parent, supervisor_alive
from funcx.protocol.error_codes import MPI_NODES_EXCEEDED, RESOURCE_SPEC_INVALID
from funcx.protocol.messages import (
    MAX_HELD,
    Kind,
    ProtocolError,
    Register,
    Result,
    Task,
    pack,
    pack_results,
    pack_tasks,
    resource_specification,
    unpack,
    unpack_results,
    unpack_tasks,
)

log = logging.getLogger("funcx.manager")

SUPERVISOR_CHECK_S = 0.5  #: how often a manager checks that its endpoint daemon lives
#: results kept for a resend until acknowledged (beyond: the oldest are let go)
MAX_UNACKED = 100_000

class Manager:
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
        self.running: list[str] = []
        self.stopping = False
        self.last_heard = time.monotonic()
        self.last_beat = 0.0
        self.dropped = 0  # messages refused (bad, or not for us)
        self.sent = 0  # results sent since start (the count the interchange acknowledges)
        self.unacked: deque[tuple[int, Result]] = deque()  # (number, result), oldest first
        #: task id -> the re-run it was last sent for (retried tasks only; bounded)
        self.reruns: dict[str, int] = {}
        self.reconnects = 0  # times it reconnected
        self.silent_since: float | None = None  # first missed threshold of this outage
        self.next_reconnect = 0.0  # monotonic time of the next try while silent
        self.backoff = self.threshold
        self.last_register = 0.0  # monotonic time of the last REGISTER sent

    def _connect(self) -> tuple[zmq.Socket, zmq.Socket]:
        """A fresh DEALER to the interchange (this manager's id, its CURVE keys)
        and a monitor of its handshakes, both polled when the loop runs."""
        up = self.ctx.socket(zmq.DEALER)
        up.setsockopt(zmq.IDENTITY, self.id.encode())
        up.setsockopt(zmq.LINGER, 2000)
        up.ipv6 = True  # the interchange may listen on an IPv6 address
        # a connect attempt into a cut link gives up soon and is tried again
        # (every 100 ms), instead of waiting out TCP's SYN back-off: a link that
        # comes back is used within seconds (the interchange holds a lost
        # manager's tasks for one threshold)
        up.setsockopt(zmq.CONNECT_TIMEOUT, max(100, int(min(self.threshold / 2, 5.0) * 1000)))
        self.keys.apply(up)
        mon = up.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        up.connect(self.launch.addr)
        if self.poller is not None:
            self.poller.register(up, zmq.POLLIN)
            self.poller.register(mon, zmq.POLLIN)
        return up, mon

    def _close_up(self, linger: int) -> None:
        if self.poller is not None:
            self.poller.unregister(self.up)
            self.poller.unregister(self.mon)
        self.up.disable_monitor()
        self.mon.close(linger=0)
        self.up.close(linger=linger)

    def on_handshake(self) -> None:
        """The connection to the interchange was (re-)established.  The first
        handshake of a socket carries the REGISTER queued when it was made; a
        later one means the interchange went away and came back (a restart, a
        dropped TCP connection): register again on it at once."""
        while int(self.mon.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self.mon.recv_multipart()
            self.handshakes += 1
            if self.handshakes > 1:
                log.warning("reconnected to the interchange at %s; registering again",
                            self.launch.addr)
                self.register_again()

    # ---------------------------------------------------------------- workers
    def reap(self) -> None:
        """Fail the task of any worker that died, and replace the worker."""
        for slot, task, detail in self.pool.reap(self.stopping):
            log.warning("worker %s died (%s) running task %s", slot.identity, detail,
                        task.task_id)
            lost = failure(task, WorkerLost(slot.identity.decode(), detail))
            lost.stdout, lost.stderr = self.pool.leftover_output(slot)
            self.results.append(lost)

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
        self.running = [t for t in self.running if t not in ids]
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
        idle workers into another container when none is warm."""
        waiting: deque[Task] = deque()
        if self.mpi is not None:  # nodes of finished tasks are free again
            self.mpi.pool.keep_only(s.task.task_id for s in self.slots if s.task is not None)
        while self.pending:
            task = self.pending.popleft()
            try:
                container = self.container_of(task)
                views = [SlotView(s.index, s.container,
                                  s.ready and s.proc is not None and s.proc.poll() is None,
                                  s.task is not None) for s in self.slots]
                action, index = pick_worker(container, views)
                if index is None:  # "wait": one is starting, or all are busy
                    waiting.append(task)
                    continue
                if action == "send":
                    if self.mpi is not None and not self.claim_nodes(task):
                        waiting.append(task)  # its nodes are busy: it waits for them
                        continue
                    self.send_to(self.slots[index], task)
                    continue
                if action == "respawn":
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
        self.running.append(task.task_id)

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
            done = {r.task_id: r for _, r in self.unacked}
            reruns = self.reruns
            for t in unpack_tasks(msg):
                if t.task_id in busy:  # already ours (a resend): never run it twice
                    log.warning("task %s was sent again; it runs here already", t.task_id)
                elif t.task_id in done and t.rerun == reruns.get(t.task_id, 0):
                    self.results.append(done[t.task_id])  # finished here: its result, again
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

    def send_up(self, frames: list[bytes]) -> bool:
        """Send to the interchange without blocking; False when the connection's
        queue is full (a long outage): the caller keeps what it could not send."""
        try:
            blobs.send(self.up, frames, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def flush(self) -> None:
        if self.running and self.send_up(pack(Kind.RUNNING, self.running)):
            self.running = []
        if self.results and self.send_results(self.results):
            self.results = []

    def send_results(self, results: list[Result]) -> bool:
        """Send ``results`` and keep each, numbered, until it is acknowledged
        (False: not sent; the caller keeps them)."""
        if not self.send_up(pack_results(results)):
            return False
        for r in results:
            self.sent += 1
            self.unacked.append((self.sent, r))
        if len(self.unacked) > MAX_UNACKED:
            log.warning("the interchange has not acknowledged %d results; forgetting the "
                        "oldest (a reconnect will not send them again)", len(self.unacked))
            while len(self.unacked) > MAX_UNACKED:
                self.unacked.popleft()
        return True

    def acknowledged(self, count: int) -> None:
        """The interchange received the first ``count`` results sent: forget them."""
        while self.unacked and self.unacked[0][0] <= count:
            self.unacked.popleft()

    def held_ids(self) -> set[str]:
        """Tasks this manager holds: running, queued here, or finished with a
        result not known to be delivered."""
        held = {s.task.task_id for s in self.slots if s.task is not None}
        held.update(t.task_id for t in self.pending)
        held.update(r.task_id for r in self.results)
        held.update(r.task_id for _, r in self.unacked)
        return held

    def reconnect(self) -> None:
        """Replace the connection to the interchange and register again."""
        self.reconnects += 1
        self._close_up(linger=0)  # what it still queues is resent by register_again
        self.up, self.mon = self._connect()
        self.handshakes = 0
        self.register_again()

    def register_again(self) -> None:
        """Register, naming what it holds; then send again the results the
        interchange has not acknowledged (after the REGISTER, so they count)."""
        self.register()
        again = [r for _, r in self.unacked]
        log.info("registered again with %d task(s) held; sending %d unacknowledged result(s) "
                 "again", len(self.held_ids()), len(again))
        self.unacked.clear()
        if again and not self.send_results(again):
            self.results[:0] = again  # sent with the next flush
        self.last_beat = time.monotonic()

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self.last_beat >= self.period:
            self.send_up(pack(Kind.HEARTBEAT, {  # one lost in an outage does not matter
                "t": time.time(), "containers": sorted({s.container for s in self.slots}),
                "memory_available": available_memory()}))
            self.last_beat = now
        if now - self.last_heard > self.threshold and now >= self.next_reconnect:
            if self.silent_since is None:
                self.silent_since = self.last_heard
            log.warning("no word from the interchange at %s for %.1fs; reconnecting (try %d, "
                        "holding %d task(s) and %d unacknowledged result(s))",
                        self.launch.addr, now - self.silent_since, self.reconnects + 1,
                        len(self.held_ids()), len(self.unacked))
            self.reconnect()
            self.next_reconnect = now + self.backoff
            self.backoff = min(self.backoff * 2, self.reconnect_max)
        if self.supervisor and now - self.last_supervisor_check >= SUPERVISOR_CHECK_S:
            self.last_supervisor_check = now
            if not supervisor_alive(self.supervisor):
                log.error("the endpoint daemon that started this block (%s) is gone; exiting",
                          self.supervisor)
                self.up.setsockopt(zmq.LINGER, 0)  # nobody is left to deliver to
                self.stopping = True

    # ------------------------------------------------------------------- loop
    def register(self) -> None:
        """(Re-)register: who it is, what it can hold, what it holds now, and
        the number its next result gets less one (the interchange counts from it)."""
        held = sorted(self.held_ids())[:MAX_HELD]
        self.last_register = time.monotonic()
        self.up.send_multipart(pack(Kind.REGISTER, Register(
            manager_id=self.id, block_id=self.block_id, hostname=socket.gethostname(),
            workers=self.n_workers, capacity=self.n_workers + self.prefetch,
            pid=os.getpid(), python=sys.version.split()[0], held=held,
            results_base=self.sent, hand_started=self.hand_started, hardware=self.hardware)))

    def _step(self, poller: zmq.Poller, tick: float) -> None:
        for sock, _ in poller.poll(int(tick * 1000)):
            if sock is self.up:
                while int(self.up.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                    self._handle("the interchange", self.on_interchange,
                                 blobs.recv(self.up))
            elif sock is self.mon:
                self.on_handshake()
            else:
                while int(self.down.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                    frames = blobs.recv(self.down)
                    self._handle(f"worker {frames[0][:32].decode(errors='replace')}",
                                 self.on_worker, frames)
        self.reap()
        self.pool.tend(time.monotonic())
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
