"""A manager: runs inside a provider block on a compute node, connects to the
interchange over ZeroMQ, forks N worker processes, hands them tasks and
returns results in batches.

Flow control is by credit: the manager announces ``capacity`` (workers +
prefetch) when it registers, and every result it returns gives one credit
back, so the interchange never sends more than the manager can hold.

A worker that dies fails only its task (``WorkerLost``) and is replaced; a
task past its walltime is killed with its worker (``TaskTimeout``).
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass

import zmq

from endpoint.execute import failure
from endpoint.scheduling import SlotView, pick_worker
from funcx.errors import TaskTimeout, WorkerLost
from funcx.protocol.messages import (Kind, ProtocolError, Result, Task, pack, pack_results,
                                     pack_tasks, unpack, unpack_results, unpack_tasks)

log = logging.getLogger("funcx.manager")


@dataclass
class WorkerSlot:
    index: int
    generation: int = 0
    proc: subprocess.Popen | None = None
    ready: bool = False
    task: Task | None = None
    deadline: float | None = None
    container: str = ""  # container id its worker runs in

    @property
    def identity(self) -> bytes:
        return f"{self.index}.{self.generation}".encode()


class Manager:
    def __init__(self, addr: str, workers: int, manager_id: str, block_id: str,
                 heartbeat_period: float, heartbeat_threshold: float, prefetch: int = 0,
                 walltime: float | None = None, worker_cmd_prefix: str = "",
                 working_dir: str | None = None, worker_mode: str = "no_container",
                 container_runtime: str | None = None, container_options: str = "",
                 mem_per_worker: float | None = None):
        self.id = manager_id
        self.block_id = block_id
        self.n_workers = workers
        self.prefetch = prefetch
        self.period, self.threshold = heartbeat_period, heartbeat_threshold
        self.default_walltime = walltime
        self.prefix = shlex.split(worker_cmd_prefix)
        self.working_dir = working_dir or os.getcwd()
        self.worker_mode = worker_mode
        self.container_runtime, self.container_options = container_runtime, container_options
        self.mem_per_worker = mem_per_worker
        self.ctx = zmq.Context()
        self.up = self.ctx.socket(zmq.DEALER)
        self.up.setsockopt(zmq.IDENTITY, manager_id.encode())
        self.up.setsockopt(zmq.LINGER, 2000)
        self.up.connect(addr)
        self.tmp = tempfile.mkdtemp(prefix="funcx-mgr-")
        self.worker_addr = f"ipc://{self.tmp}/workers"
        self.down = self.ctx.socket(zmq.ROUTER)
        self.down.setsockopt(zmq.LINGER, 0)
        self.down.bind(self.worker_addr)
        self.slots = [WorkerSlot(i) for i in range(workers)]
        self.specs: dict[str, dict] = {"": {}}
        self.by_identity: dict[bytes, WorkerSlot] = {}
        self.pending: deque[Task] = deque()
        self.results: list[Result] = []
        self.running: list[str] = []
        self.stopping = False
        self.last_heard = time.monotonic()
        self.last_beat = 0.0

    # ---------------------------------------------------------------- workers
    def spawn(self, slot: WorkerSlot, container: str = "", spec: dict | None = None) -> None:
        slot.generation += 1
        slot.ready, slot.task, slot.deadline, slot.container = False, None, None, container
        args = [self.worker_addr, slot.identity.decode(), self.working_dir]
        if container and spec:
            from endpoint.containers import worker_command

            cmd = worker_command(self.worker_mode, spec["location"], args, self.tmp,
                                 self.working_dir, self.container_runtime,
                                 self.container_options, container)
        else:
            cmd = [*self.prefix, sys.executable, "-m", "endpoint.worker", *args]
        env = {**os.environ}
        if self.mem_per_worker:
            env["FUNCX_WORKER_MEMORY_GB"] = str(self.mem_per_worker)
        if not (container and spec):  # a container worker's parent is the runtime
            env["FUNCX_MANAGER_PID"] = str(os.getpid())
        slot.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, env=env)
        self.by_identity[slot.identity] = slot
        self.specs[container] = spec or {}

    def respawn_as(self, slot: WorkerSlot, container: str, spec: dict) -> None:
        """Replace an idle worker with one running in ``container``."""
        self.by_identity.pop(slot.identity, None)
        slot.proc.kill()
        slot.proc.wait()
        log.info("worker %d now runs container %s", slot.index, container or "(none)")
        self.spawn(slot, container, spec)

    def reap(self) -> None:
        """Fail the task of any worker that died, and replace the worker."""
        for slot in self.slots:
            code = slot.proc.poll() if slot.proc else None
            if code is None:
                continue
            self.by_identity.pop(slot.identity, None)
            if slot.task is not None:
                detail = f"exit signal {-code}" if code < 0 else f"exit status {code}"
                log.warning("worker %s died (%s) running task %s", slot.identity, detail,
                            slot.task.task_id)
                self.results.append(failure(slot.task, WorkerLost(slot.identity.decode(), detail)))
            if not self.stopping:
                self.spawn(slot, slot.container, self.specs.get(slot.container))

    def enforce_walltime(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.task is not None and slot.deadline is not None and now > slot.deadline:
                walltime = slot.task.resource_specification.get("walltime", self.default_walltime)
                log.warning("task %s exceeded its walltime of %ss", slot.task.task_id, walltime)
                self.results.append(failure(slot.task, TaskTimeout(walltime)))
                slot.task = None
                slot.proc.kill()  # reap() replaces the worker

    def container_of(self, task: Task) -> str:
        """The container a task runs in here ("" when containers are off or unknown)."""
        if self.worker_mode == "no_container" or not task.container_spec.get("location"):
            return ""
        return task.container_id

    def dispatch(self) -> None:
        """Hand pending tasks to idle workers of their container, restarting
        idle workers into another container when none is warm."""
        waiting: deque[Task] = deque()
        while self.pending:
            task = self.pending.popleft()
            container = self.container_of(task)
            views = [SlotView(s.index, s.container, s.ready and s.proc.poll() is None,
                              s.task is not None) for s in self.slots]
            action, index = pick_worker(container, views)
            if action == "send":
                self.send_to(self.slots[index], task)
                continue
            if action == "respawn":
                self.respawn_as(self.slots[index], container, task.container_spec)
            waiting.append(task)
        self.pending = waiting

    def send_to(self, slot: WorkerSlot, task: Task) -> None:
        slot.task = task
        walltime = task.resource_specification.get("walltime", self.default_walltime)
        slot.deadline = time.monotonic() + float(walltime) if walltime else None
        self.down.send_multipart([slot.identity, *pack_tasks([task])])
        self.running.append(task.task_id)

    # -------------------------------------------------------------- messages
    def on_interchange(self, frames: list[bytes]) -> None:
        self.last_heard = time.monotonic()
        msg = unpack(frames)
        if msg.kind == Kind.TASKS:
            self.pending.extend(unpack_tasks(msg))
        elif msg.kind == Kind.SHUTDOWN:
            log.info("interchange asked to shut down")
            self.stopping = True

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
                    self.results.append(r)
                    slot.task, slot.deadline = None, None

    def flush(self) -> None:
        if self.running:
            self.up.send_multipart(pack(Kind.RUNNING, self.running))
            self.running = []
        if self.results:
            self.up.send_multipart(pack_results(self.results))
            self.results = []

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self.last_beat >= self.period:
            self.up.send_multipart(pack(Kind.HEARTBEAT, {
                "t": time.time(), "containers": sorted({s.container for s in self.slots})}))
            self.last_beat = now
        if now - self.last_heard > self.threshold:
            log.error("no word from the interchange for %.1fs; exiting", now - self.last_heard)
            self.stopping = True

    # ------------------------------------------------------------------- loop
    def run(self) -> None:
        for slot in self.slots:
            self.spawn(slot)
        self.up.send_multipart(pack(Kind.REGISTER, {
            "manager_id": self.id, "block_id": self.block_id, "hostname": socket.gethostname(),
            "workers": self.n_workers, "capacity": self.n_workers + self.prefetch,
            "pid": os.getpid(), "python": sys.version.split()[0],
        }))
        poller = zmq.Poller()
        poller.register(self.up, zmq.POLLIN)
        poller.register(self.down, zmq.POLLIN)
        tick = min(0.2, self.period)
        while not self.stopping:
            for sock, _ in poller.poll(tick * 1000):
                try:
                    if sock is self.up:
                        while self.up.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                            self.on_interchange(self.up.recv_multipart())
                    else:
                        while self.down.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                            self.on_worker(self.down.recv_multipart())
                except ProtocolError as e:
                    log.error("dropping bad message: %s", e)
            self.reap()
            self.enforce_walltime()
            self.dispatch()
            self.flush()
            self.heartbeat()
        self.shutdown()

    def shutdown(self) -> None:
        for slot in self.slots:
            if slot.proc and slot.proc.poll() is None:
                slot.proc.kill()
        for slot in self.slots:
            if slot.proc:
                slot.proc.wait()
        self.up.close()
        self.down.close()
        self.ctx.term()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="funcX manager (started by the endpoint's provider)")
    ap.add_argument("--addr", required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--block-id", default="0")
    ap.add_argument("--manager-id", default=None)
    ap.add_argument("--heartbeat-period", type=float, default=2.0)
    ap.add_argument("--heartbeat-threshold", type=float, default=10.0)
    ap.add_argument("--prefetch", type=int, default=0)
    ap.add_argument("--walltime", type=float, default=None)
    ap.add_argument("--worker-cmd-prefix", default="")
    ap.add_argument("--working-dir", default=None)
    ap.add_argument("--worker-mode", default="no_container")
    ap.add_argument("--container-runtime", default=None)
    ap.add_argument("--container-options", default="")
    ap.add_argument("--mem-per-worker", type=float, default=None, help="GB of address space")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s manager %(levelname)s %(message)s")
    mgr = Manager(a.addr, a.workers, a.manager_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
                  a.block_id, a.heartbeat_period, a.heartbeat_threshold, a.prefetch, a.walltime,
                  a.worker_cmd_prefix, a.working_dir, a.worker_mode, a.container_runtime,
                  a.container_options, a.mem_per_worker)

    def _stop(*_):
        mgr.stopping = True

    signal.signal(signal.SIGTERM, _stop)
    mgr.run()


if __name__ == "__main__":
    main()
