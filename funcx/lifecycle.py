"""Process lifecycle: children that never outlive their parent, and records
that name a process by pid *and* start time (DESIGN decision 10).

* :func:`child_preexec` makes a child die (SIGKILL by default) when the
  process that started it dies, via ``prctl(PR_SET_PDEATHSIG)`` on Linux.
  Caveat: the signal fires when the parent *thread* that forked the child
  exits, so start long-lived children from a thread that lives as long as
  the parent (the main thread, or the supervising loop's thread).
* :class:`ProcessRecord` is what a pid file holds: a pid alone may be reused
  by an unrelated process after a crash; pid plus start time is not.
* :func:`end_tree` ends a process and every descendant (found by process
  tree, never by name or environment).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass

import psutil

PR_SET_PDEATHSIG = 1
_START_SLACK_S = 0.05  # create_time is rounded differently across reads


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


#: resolved once, in the parent: a preexec_fn runs between fork and exec, where
#: loading a library (dlopen, malloc) could deadlock on a lock another thread held
_PRCTL = _load_prctl()


def _prctl_pdeathsig(sig: int) -> bool:
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def child_preexec(sig: int = signal.SIGKILL, new_session: bool = False) -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets ``sig`` when
    its parent dies, and exits at once if the parent is already gone (the race
    between fork and prctl).  ``new_session`` also makes it a session leader
    (so a whole tree can be signalled as a group)."""
    parent = os.getpid()

    def _preexec() -> None:
        if new_session:
            os.setsid()
        _prctl_pdeathsig(sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return _preexec


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Called early in a child process that was not started with
    :func:`child_preexec` (e.g. by a Parsl provider's shell): get ``sig`` when
    the parent dies; exit if it is already gone (re-parented to init)."""
    parent = os.getppid()
    _prctl_pdeathsig(sig)
    if parent == 1 or os.getppid() != parent:
        os._exit(1)


@dataclass(frozen=True)
class ProcessRecord:
    """A process, named so that a reused pid is not mistaken for it."""

    pid: int
    started: float  # psutil create_time()

    @classmethod
    def of(cls, pid: int) -> ProcessRecord:
        return cls(pid, psutil.Process(pid).create_time())

    def to_dict(self) -> dict[str, float]:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_dict(cls, d: dict) -> ProcessRecord | None:
        try:
            return cls(int(d["pid"]), float(d["started"]))
        except (KeyError, TypeError, ValueError):
            return None

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None (gone, or the pid reused)."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.started) > _START_SLACK_S:
                return None
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.NoSuchProcess:
            return None


def end_tree(proc: psutil.Process, timeout: float = 5.0) -> None:
    """SIGTERM ``proc`` and all its descendants, then SIGKILL what is left."""
    try:
        procs = [*proc.children(recursive=True), proc]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the "subreaper" of its descendants (Linux): a
    grandchild orphaned by its own parent (e.g. the background shell a Parsl
    LocalProvider starts a block in) is re-parented here instead of to init,
    so it stays in this process's tree.  The caller must reap such orphans
    (``os.waitpid``) when it knows they ended."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap(pid: int) -> bool:
    """Collect ``pid`` if it is a finished child of this process; True once it
    is gone (reaped, or not our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def supervisor_spec(pid: int | None = None) -> str:
    """``host:pid:start_time`` naming process ``pid`` (default: this one), for a
    process on the same host to watch (see :func:`supervisor_alive`)."""
    import socket

    rec = ProcessRecord.of(pid or os.getpid())
    return f"{socket.gethostname()}:{rec.pid}:{rec.started!r}"


def supervisor_alive(spec: str) -> bool:
    """False only when ``spec`` names a process on this host that is gone (or
    whose pid was reused); True when it is alive, on another host, or malformed."""
    import socket

    try:
        host, pid, started = spec.rsplit(":", 2)
        rec = ProcessRecord(int(pid), float(started))
    except ValueError:
        return True
    if host != socket.gethostname():
        return True
    return rec.process() is not None
