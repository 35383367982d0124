"""A manager's worker processes (endpoint/worker_pool.py), with real
processes and no manager: a cancelled task's worker dies with its whole
process group and is replaced at once; a group that ignores SIGTERM is
killed after the grace; the pool's shutdown leaves nothing behind.  (Each
worker here waits for a manager that never talks to it.)"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
from faults.faultlib import wait_until

from endpoint.worker_pool import WorkerPool, signal_group
from funcx.protocol.messages import Task

#: the worker starts a sleeping child in its process group first
WITH_CHILD = ["sh", "-c", 'sleep 600 & exec "$@"', "sh"]
#: the worker and its group ignore SIGTERM (SIG_IGN survives exec)
DEAF = ["sh", "-c", 'trap "" TERM; sleep 600 & exec "$@"', "sh"]


def pool(tmp_path: Path, prefix: list[str], grace: float = 0.3) -> WorkerPool:
    return WorkerPool(f"ipc://{tmp_path}/workers", str(tmp_path), str(tmp_path), 1,
                      prefix=prefix, kill_grace=grace)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def group_of(pid: int) -> list[int]:
    """The pids of ``pid``'s process group (itself first), once its ``sleep 600``
    child is up.  Only that child is counted: a short-lived process the worker
    runs while it starts would end by itself and look like a kill."""
    def members() -> list[int] | None:
        kids = []
        for c in psutil.Process(pid).children(recursive=True):
            try:
                if c.name() == "sleep":
                    kids.append(c.pid)
            except psutil.NoSuchProcess:
                continue
        return [pid, *kids] if kids else None
    found = wait_until(members, 10)
    assert found, "the worker's child never started"
    return found


def running_task(p: WorkerPool) -> None:
    slot = p.slots[0]
    slot.task = Task(task_id="t1", function_id="f", payload="")


def test_cancel_kills_the_workers_group_and_starts_a_replacement(tmp_path):
    p = pool(tmp_path, WITH_CHILD)
    slot = p.slots[0]
    p.spawn(slot)
    try:
        worker = slot.proc
        assert worker is not None and os.getpgid(worker.pid) == worker.pid  # its own group
        members = group_of(worker.pid)
        old_identity = slot.identity
        running_task(p)
        assert p.cancel(slot, time.monotonic()) == worker.pid
        # at once: a new worker in the slot, free, under a new identity
        assert slot.proc is not worker and slot.task is None and slot.identity != old_identity
        assert old_identity not in p.by_identity and slot.identity in p.by_identity
        assert wait_until(lambda: (p.tend(time.monotonic()), all(map(gone, members)))[1], 10), \
            "SIGTERM to the group left a process"
        assert wait_until(lambda: (p.tend(time.monotonic()), not p.dying)[1], 10)
        assert slot.proc.poll() is None  # the replacement lives
    finally:
        p.shutdown()


def test_a_cancelled_tasks_captured_output_is_dropped_with_it(tmp_path):
    """What the cancelled task printed is never read as the slot's next task's."""
    p = pool(tmp_path, [])
    slot = p.slots[0]
    p.spawn(slot)
    try:
        prefix = p.output_prefix(slot)
        for stream in ("stdout", "stderr"):
            Path(f"{prefix}.{stream}").write_text("printed by the cancelled task\n")
        running_task(p)
        p.cancel(slot, time.monotonic())
        assert not Path(f"{prefix}.stdout").exists() and not Path(f"{prefix}.stderr").exists()
        assert p.leftover_output(slot) == ("", "")
    finally:
        p.shutdown()


def test_cancel_removes_the_captured_output_without_reading_it(tmp_path, monkeypatch):
    """The output of a cancelled task is thrown away: cancel unlinks its
    capture files and never reads (up to twice FUNCX_TASK_OUTPUT_MAX of) them."""
    from endpoint import task_output

    reads: list[int] = []
    real_read = task_output.read_bounded

    def counting_read(fd: int, limit: int, stream: str) -> str:
        reads.append(fd)
        return real_read(fd, limit, stream)

    monkeypatch.setattr(task_output, "read_bounded", counting_read)
    p = pool(tmp_path, [])
    slot = p.slots[0]
    p.spawn(slot)
    try:
        prefix = p.output_prefix(slot)
        for stream in ("stdout", "stderr"):
            Path(f"{prefix}.{stream}").write_bytes(b"y" * 1_000_000)
        running_task(p)
        p.cancel(slot, time.monotonic())
        assert reads == []
        assert not Path(f"{prefix}.stdout").exists() and not Path(f"{prefix}.stderr").exists()
    finally:
        p.shutdown()


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(tmp_path):
    p = pool(tmp_path, DEAF, grace=0.5)
    slot = p.slots[0]
    p.spawn(slot)
    try:
        assert slot.proc is not None
        members = group_of(slot.proc.pid)
        running_task(p)
        t0 = time.monotonic()
        p.cancel(slot, t0)
        p.tend(t0 + 0.1)  # within the grace: SIGTERM only, and it is ignored
        assert not any(map(gone, members)) and p.dying
        assert wait_until(lambda: (p.tend(time.monotonic()), all(map(gone, members)))[1], 10), \
            "SIGKILL after the grace left a process"
        assert time.monotonic() - t0 >= 0.5
        assert wait_until(lambda: (p.tend(time.monotonic()), not p.dying)[1], 10)
    finally:
        p.shutdown()


def test_reap_reports_a_dead_workers_task_and_replaces_it(tmp_path):
    p = pool(tmp_path, [])
    slot = p.slots[0]
    p.spawn(slot)
    try:
        assert slot.proc is not None
        first = slot.proc
        running_task(p)
        first.kill()
        first.wait()
        (lost,) = p.reap(stopping=False)
        assert lost[1].task_id == "t1" and lost[2] == f"exit signal {signal.SIGKILL}"
        assert slot.proc is not first and slot.proc.poll() is None
    finally:
        p.shutdown()


def test_shutdown_kills_workers_their_groups_and_dying_ones(tmp_path):
    p = pool(tmp_path, DEAF, grace=60)
    slot = p.slots[0]
    p.spawn(slot)
    assert slot.proc is not None
    dying = group_of(slot.proc.pid)
    running_task(p)
    p.cancel(slot, time.monotonic())  # ignored SIGTERM: still dying
    assert slot.proc is not None
    live = group_of(slot.proc.pid)
    p.shutdown()
    assert wait_until(lambda: all(map(gone, dying + live)), 10)


def test_signal_group_of_a_finished_group_says_so(tmp_path):
    p = pool(tmp_path, [])
    slot = p.slots[0]
    p.spawn(slot)
    assert slot.proc is not None
    proc = slot.proc
    p.shutdown()
    assert signal_group(proc, 0) is False
