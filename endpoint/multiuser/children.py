"""One child endpoint of a multi-user parent: a (local account, rendered
config) pair with

* its own interchange in the parent, bound to loopback, with its own
  CurveZMQ keys (``<endpoint dir>/run/users/<child>/curve``, root's, 0700):
  only the holder of this child's manager key can connect, so one user's
  processes can neither fetch another user's tasks nor send their results;
  the user controls that manager, so the interchange refuses frames past
  :func:`max_message_bytes`, reads at most MESSAGES_PER_S messages a second,
  and every result is size-checked again here (:meth:`Child._output`);
* its process, started as the account: fork, then (``subprocess.Popen``'s
  ``user``/``group``/``extra_groups``) the account's gid, supplementary groups
  and uid, an allowlisted environment, ``/`` as cwd (the child enters its home
  itself, as the account: a root-squashed home may be closed to root), and SIGTERM when
  the parent dies (``PR_SET_PDEATHSIG``, set again after the uid change by the
  child itself).  It reads its manager key from stdin, writes it 0600 in its
  own home, and runs a manager (with its workers) against the interchange.

The parent never runs user code: it only routes serialized tasks.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from endpoint.execute import failure
from endpoint.interchange import Interchange
from endpoint.launch import ManagerLaunch
from endpoint.multiuser.mapper import Account
from funcx.defaults import setting
from funcx.errors import MaxResultSizeExceeded
from funcx.lifecycle import child_preexec
from funcx.protocol.messages import Result, Task

log = logging.getLogger("funcx.multiuser.children")
#: the only FUNCX_* settings a child gets from the parent's environment: the
#: manager's and workers' tunables.  An allowlist: anything else (the service's
#: address and TLS files, tokens, Redis, the parent's home) stays with the parent.
CHILD_SETTINGS = ("FUNCX_MAX_RESULT_BYTES", "FUNCX_TASK_OUTPUT_MAX",
                  "FUNCX_WORKER_KILL_GRACE_S", "FUNCX_MANAGER_PREFETCH",
                  "FUNCX_HEARTBEAT_PERIOD_S", "FUNCX_HEARTBEAT_THRESHOLD_S")
#: bytes a manager's message frame may carry beyond a result and its output
#: (headers, the exception, encoding: a serialized result is text, base64 of
#: its bytes at worst)
FRAME_OVERHEAD = 1024 * 1024
#: messages a child's manager may send per second (beyond it the parent reads
#: them more slowly: the manager waits, the parent does not)
MESSAGES_PER_S = 500.0


def child_environment(account: Account, parent_env: dict[str, str]) -> dict[str, str]:
    """A clean environment for ``account``: its identity and home, a standard
    PATH, and the parent's settings named in :data:`CHILD_SETTINGS`."""
    env = {"HOME": account.home, "USER": account.name, "LOGNAME": account.name,
           "SHELL": account.shell or "/bin/sh", "PATH": "/usr/local/bin:/usr/bin:/bin",
           "LANG": parent_env.get("LANG", "C.UTF-8")}
    for k in CHILD_SETTINGS:
        if k in parent_env:
            env[k] = parent_env[k]
    return env


def result_limit() -> int:
    """Bytes of one result, its output included, a child may send back: the
    service's FUNCX_MAX_RESULT_BYTES (the encoded result may be 4/3 of it)
    plus both output streams (FUNCX_TASK_OUTPUT_MAX each)."""
    return (int(setting("MAX_RESULT_BYTES")) * 4 // 3
            + 2 * int(setting("TASK_OUTPUT_MAX")) * 4)


def max_message_bytes() -> int:
    """ZMQ_MAXMSGSIZE of a child's interchange socket: a frame larger than any
    honest result is refused by ZeroMQ before it is buffered (the connection
    is dropped)."""
    return result_limit() + FRAME_OVERHEAD


def oversized(r: Result, limit: int) -> int:
    """The bytes of ``r`` (its blobs included) when they pass ``limit``, else 0."""
    size = sum(len(x) for x in (r.data, r.exc_data, r.stdout, r.stderr, *r.blobs))
    return size if size > limit else 0


class Child:
    """A per-user endpoint: its interchange (here) and its process (as the user)."""

    def __init__(self, account: Account, identity: dict[str, str], fingerprint: str,
                 options: dict[str, Any], endpoint_id: str, run_dir: Path, log_dir: Path,
                 on_output: Callable[[list], None], heartbeat_period: float,
                 heartbeat_threshold: float, max_retries: int, python: str = sys.executable):
        self.account, self.identity, self.fingerprint = account, identity, fingerprint
        self.options, self.endpoint_id, self.python = options, endpoint_id, python
        self.name = f"{account.name}-{fingerprint}"
        self.dir = run_dir / "users" / self.name
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_path = log_dir / f"{self.name}.log"
        self.heartbeat_period, self.heartbeat_threshold = heartbeat_period, heartbeat_threshold
        self.on_output = on_output
        #: tasks handed to this child and not yet ended (a result, or cancelled)
        self.pending: dict[str, Task] = {}
        self._pending_lock = threading.Lock()
        self.result_limit = result_limit()
        #: results this child's manager sent over result_limit (refused here)
        self.oversized = 0
        self.interchange = Interchange("127.0.0.1", 0, self._output, heartbeat_period,
                                       heartbeat_threshold, max_retries, 0.05,
                                       key_dir=self.dir / "curve",
                                       port_file=self.dir / "interchange_port",
                                       max_message_bytes=max_message_bytes(),
                                       max_messages_per_s=MESSAGES_PER_S)
        self.proc: subprocess.Popen | None = None
        self.started_at = time.time()
        self.last_task = time.monotonic()
        self.tasks_run = 0
        self.restarts = 0
        #: starts since a manager of this child last registered (see Router.tend)
        self.starts_unregistered = 0
        #: time.monotonic() of the last start of its process (restart back-off)
        self.launched = time.monotonic()
        self._thread = threading.Thread(target=self.interchange.run, daemon=True,
                                        name=f"interchange-{self.name}")
        self._thread.start()
        self._feed = self.interchange.feeder()

    # ---------------------------------------------------------------- process
    def launch(self) -> ManagerLaunch:
        o = self.options
        return ManagerLaunch(
            addr=f"tcp://127.0.0.1:{self.interchange.port}", workers=int(o.get("workers", 1)),
            curve_keys="(written by the child)", block_id=self.name, manager_id=self.name,
            heartbeat_period=float(o.get("heartbeat_period", self.heartbeat_period)),
            heartbeat_threshold=self.heartbeat_threshold, prefetch=int(o.get("prefetch", 0)),
            walltime=o.get("walltime"), max_walltime=o.get("max_walltime"),
            mem_per_worker=o.get("mem_per_worker"), working_dir=o.get("working_dir"),
            debug=bool(o.get("debug", False)))

    def start_process(self) -> None:
        """Fork the child as the account (see the module docstring)."""
        a = self.account
        self.launched = time.monotonic()
        keys = self.interchange.keys.manager_file.read_text()
        self.starts_unregistered += 1
        handoff = json.dumps({"endpoint_id": self.endpoint_id, "child": self.name,
                              "parent_pid": os.getpid(),
                              "manager_keys": keys, "argv": self.launch().to_argv()})
        logf = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "endpoint.multiuser.child"], stdin=subprocess.PIPE,
                stdout=logf, stderr=logf, user=a.uid, group=a.gid, extra_groups=list(a.groups),
                env=child_environment(a, dict(os.environ)), cwd="/", close_fds=True,
                preexec_fn=child_preexec(signal.SIGTERM, new_session=True), umask=0o077)
        finally:
            os.close(logf)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(handoff.encode())
            self.proc.stdin.close()
        except OSError as e:  # it died at once: its log says why
            log.error("child %s did not take its start-up data (%s); see %s",
                      self.name, type(e).__name__, self.log_path)
        log.info("child %s started as %s (uid %d), pid %d", self.name, a.name, a.uid,
                 self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ------------------------------------------------------------------ tasks
    def submit(self, tasks: list[Task]) -> None:
        """Hand tasks to this child's interchange (caller holds the router's lock)."""
        self.last_task = time.monotonic()
        self.tasks_run += len(tasks)
        with self._pending_lock:
            self.pending.update((t.task_id, t) for t in tasks)
        self.interchange.submit(tasks, self._feed)

    def cancel(self, task_ids: list[str]) -> None:
        with self._pending_lock:
            for tid in task_ids:
                self.pending.pop(tid, None)
        self.interchange.cancel(task_ids, self._feed)

    def in_flight(self) -> int:
        """Tasks handed to this child that have not ended yet."""
        return len(self.pending)

    def _output(self, items: list) -> None:
        """What this child's interchange passes on, checked again here: a result
        over :attr:`result_limit` (the worker's own check runs as the user, who
        controls it) becomes a failure saying so."""
        out = []
        for r in items:
            if isinstance(r, Result):
                with self._pending_lock:
                    task = self.pending.pop(r.task_id, None)
                size = oversized(r, self.result_limit)
                if size:
                    self.oversized += 1
                    log.warning("child %s sent a result of %d bytes for task %s, over "
                                "the limit of %d: refused", self.name, size, r.task_id,
                                self.result_limit)
                    t = task or Task(r.task_id, "", "", task_group_id=r.task_group_id)
                    r = failure(t, MaxResultSizeExceeded(size, self.result_limit),
                                reason="result too large")
            out.append(r)
        self.on_output(out)

    def fail_pending(self, exc: Exception, code: str) -> int:
        """End every task this child holds with ``exc`` (its start keeps failing)."""
        with self._pending_lock:
            tasks, self.pending = list(self.pending.values()), {}
        if tasks:
            self.on_output([failure(t, exc, error_code=code) for t in tasks])
        return len(tasks)

    def outstanding(self) -> int:
        return self.interchange.outstanding()

    def idle_for(self, now: float) -> float:
        """Seconds without a task queued or running here."""
        if self.outstanding():
            return 0.0
        return now - max(self.last_task, self.interchange.idle_since)

    def view(self) -> dict[str, Any]:
        """For status and `funcx-endpoint status`: who, as which account, how busy."""
        return {"name": self.name, "account": self.account.name, "uid": self.account.uid,
                "identity": self.identity.get("username") or self.identity.get("id"),
                "pid": self.proc.pid if self.proc is not None else None,
                "alive": self.alive(), "started_at": self.started_at,
                "outstanding": self.outstanding(), "tasks": self.tasks_run,
                "restarts": self.restarts, "managers": len(self.interchange.managers),
                "options": self.options, "log": str(self.log_path)}

    # ------------------------------------------------------------------- stop
    def stop(self, grace: float = 5.0) -> None:
        """End the child: its manager told to shut down, then SIGTERM, then SIGKILL."""
        self.interchange.stop_event.set()
        self._thread.join(timeout=5)
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=5)
        self._feed.close(linger=0)
        self.interchange.close()
