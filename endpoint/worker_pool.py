"""A manager's worker processes (:mod:`endpoint.manager` drives them): start
one per slot, replace one that died or must run another container, and kill
one whose task was cancelled or ran past its walltime.

Each worker is the leader of its own process group (a new session), so a
kill reaches whatever the function started too: a cancelled task's worker
gets SIGTERM on its whole group, SIGKILL after ``FUNCX_WORKER_KILL_GRACE_S``
if anything of the group is still there, and a replacement is started at
once in its slot (issue 16).  A task past its walltime gets SIGKILL on its
group at once, as before.  A killed worker's late messages are ignored: its
identity (slot index and generation) is no longer known.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

from endpoint.affinity import CPUS_VAR, Placement
from endpoint.task_output import discard, leftover
from endpoint.worker_env import worker_environment
from funcx.defaults import setting
from funcx.lifecycle import child_preexec
from funcx.protocol.messages import Task

log = logging.getLogger("funcx.manager")


@dataclass
class WorkerSlot:
    index: int
    generation: int = 0
    proc: subprocess.Popen | None = None
    ready: bool = False
    task: Task | None = None
    deadline: float | None = None
    walltime: float | None = None  # the task's walltime, as enforced
    container: str = ""  # container id its worker runs in

    @property
    def identity(self) -> bytes:
        return f"{self.index}.{self.generation}".encode()


@dataclass
class Dying:
    """A worker (and its process group) told to end; SIGKILL at ``kill_at``."""

    proc: subprocess.Popen
    kill_at: float
    task_id: str
    killed: bool = False


def signal_group(proc: subprocess.Popen, sig: int) -> bool:
    """Send ``sig`` to the process group ``proc`` leads; False when none of
    the group is left."""
    try:
        os.killpg(proc.pid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # not ours (cannot happen for our own children)
        return False


@dataclass
class WorkerPool:
    """The worker slots of one manager and how their processes are started."""

    worker_addr: str
    working_dir: str
    tmp: str
    n: int
    prefix: list[str] = field(default_factory=list)
    worker_mode: str = "no_container"
    container_runtime: str | None = None
    container_options: str = ""
    mem_per_worker: float | None = None
    kill_grace: float = field(default_factory=lambda: float(setting("WORKER_KILL_GRACE_S")))
    #: each slot's accelerator and CPUs (endpoint.affinity), by slot index: a
    #: replacement worker gets its slot's again
    placements: list[Placement] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.slots = [WorkerSlot(i) for i in range(self.n)]
        self.specs: dict[str, dict] = {"": {}}
        self.by_identity: dict[bytes, WorkerSlot] = {}
        self.dying: list[Dying] = []

    def placement(self, slot: WorkerSlot) -> Placement:
        """The accelerator and CPUs of ``slot`` (none: an unpinned placement)."""
        if slot.index < len(self.placements):
            return self.placements[slot.index]
        return Placement(slot.index)

    def worker_env(self, container: bool, slot: WorkerSlot | None = None) -> dict[str, str]:
        extra = self.placement(slot).env() if slot is not None else {}
        if self.mem_per_worker:
            extra["FUNCX_WORKER_MEMORY_GB"] = str(self.mem_per_worker)
        if not container:  # a container worker's parent is the runtime
            extra["FUNCX_MANAGER_PID"] = str(os.getpid())
        env = worker_environment(os.environ, extra)
        if CPUS_VAR not in extra:  # only its own placement pins it
            env.pop(CPUS_VAR, None)
        return env

    def spawn(self, slot: WorkerSlot, container: str = "", spec: dict | None = None) -> None:
        """Start a worker in ``slot`` (a new generation), in ``container`` if given."""
        slot.generation += 1
        slot.ready, slot.task, slot.deadline, slot.container = False, None, None, container
        slot.walltime = None
        args = [self.worker_addr, slot.identity.decode(), self.working_dir]
        if container and spec:
            from endpoint.containers import worker_command

            cmd = worker_command(self.worker_mode, spec["location"], args, self.tmp,
                                 self.working_dir, self.container_runtime,
                                 self.container_options, container)
        else:
            cmd = [*self.prefix, sys.executable, "-m", "endpoint.worker", *args]
        # the worker (or its prefix / container runtime) gets SIGKILL the moment
        # the manager dies (PR_SET_PDEATHSIG follows the forking thread: the
        # manager's main thread), and leads its own process group, so a cancel
        # or a walltime kill reaches what the function started too
        env = self.worker_env(bool(container and spec), slot)
        if not (container and spec):  # a container may not see this manager's tmp
            env["FUNCX_TASK_OUTPUT_PREFIX"] = self.output_prefix(slot)
        slot.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, cwd=self.working_dir,
                                     env=env, preexec_fn=child_preexec(new_session=True))
        self.by_identity[slot.identity] = slot
        self.specs[container] = spec or {}

    def output_prefix(self, slot: WorkerSlot) -> str:
        """Where the worker of ``slot`` captures its task's output (in this
        manager's private tmp; see :mod:`endpoint.task_output`)."""
        return os.path.join(self.tmp, f"task-output-{slot.index}")

    def leftover_output(self, slot: WorkerSlot) -> tuple[str, str]:
        """``(stdout, stderr)`` the task of ``slot``'s killed or dead worker
        had written (read before the slot's next task starts)."""
        out = leftover(self.output_prefix(slot))
        return out["stdout"], out["stderr"]

    def respawn_as(self, slot: WorkerSlot, container: str, spec: dict) -> None:
        """Replace an idle worker with one running in ``container``."""
        self.by_identity.pop(slot.identity, None)
        if slot.proc is not None:
            signal_group(slot.proc, signal.SIGKILL)
            slot.proc.wait()
        log.info("worker %d now runs container %s", slot.index, container or "(none)")
        self.spawn(slot, container, spec)

    def reap(self, stopping: bool) -> list[tuple[WorkerSlot, Task, str]]:
        """Replace every worker that died (unless ``stopping``); the tasks they
        were running, each with its slot and how the worker ended."""
        lost: list[tuple[WorkerSlot, Task, str]] = []
        for slot in self.slots:
            code = slot.proc.poll() if slot.proc else None
            if code is None:
                continue
            self.by_identity.pop(slot.identity, None)
            if slot.task is not None:
                detail = f"exit signal {-code}" if code < 0 else f"exit status {code}"
                lost.append((slot, slot.task, detail))
            if not stopping:
                self.spawn(slot, slot.container, self.specs.get(slot.container))
        return lost

    def kill_now(self, slot: WorkerSlot) -> None:
        """SIGKILL the worker of ``slot`` and its group (a walltime); :meth:`reap`
        replaces it."""
        if slot.proc is not None:
            signal_group(slot.proc, signal.SIGKILL)

    def cancel(self, slot: WorkerSlot, now: float) -> int | None:
        """Stop the task running in ``slot``: SIGTERM to its worker's group
        (SIGKILL after the grace, see :meth:`tend`) and a fresh worker in the
        slot at once.  The killed worker's pid (None if it had none)."""
        proc, task = slot.proc, slot.task
        self.by_identity.pop(slot.identity, None)  # its late messages are ignored
        # its output goes with it (no result is sent), never to the slot's next task
        discard(self.output_prefix(slot))
        pid = None
        if proc is not None:
            pid = proc.pid
            signal_group(proc, signal.SIGTERM)
            self.dying.append(Dying(proc, now + self.kill_grace,
                                    task.task_id if task is not None else ""))
        self.spawn(slot, slot.container, self.specs.get(slot.container))
        return pid

    def tend(self, now: float) -> None:
        """Reap killed workers; SIGKILL the groups of those past their grace
        (a function that ignores SIGTERM, or a child that outlived its worker)."""
        left: list[Dying] = []
        for d in self.dying:
            exited = d.proc.poll() is not None
            if now >= d.kill_at and not d.killed:
                d.killed = True
                if signal_group(d.proc, signal.SIGKILL):
                    log.warning("task %s: its worker's process group outlived SIGTERM by "
                                "%gs; killed", d.task_id, self.kill_grace)
            if exited and (d.killed or not signal_group(d.proc, 0)):
                continue  # gone, children included
            left.append(d)
        self.dying = left

    def shutdown(self) -> None:
        """Kill every worker and its group, and wait for the workers."""
        for slot in self.slots:
            if slot.proc and slot.proc.poll() is None:
                signal_group(slot.proc, signal.SIGKILL)
        for d in self.dying:
            signal_group(d.proc, signal.SIGKILL)
        for proc in [s.proc for s in self.slots] + [d.proc for d in self.dying]:
            if proc is not None:
                proc.wait()
