"""The parent's stand-in for the interchange: it routes each task to the
child endpoint of its submitter's account and never runs any task itself.

For each task (its ``identity`` written by the service): map the identity to
an account (endpoint.multiuser.mapper), render the user config template with
the task's ``user_endpoint_config`` (endpoint.multiuser.render), and hand the
task to the child for (account, rendered config) — started on the first
task, within the site's limits.  A task that cannot be placed fails alone
with a specific error code (IDENTITY_UNMAPPED, USER_ENDPOINT_CONFIG_INVALID,
USER_ENDPOINT_LIMIT — also past ``max_tasks_per_user`` in flight, so one
account's backlog never fills the agent's shared window), logged and
audited.  The loop (:meth:`run`) stops children idle past ``idle_timeout_s``
and restarts a child that died with tasks outstanding (its interchange
re-dispatches them); one whose manager never registers in START_ATTEMPTS
restarts fails its tasks (USER_ENDPOINT_START_FAILED) and is ended.
Mapping, rendering and starting run outside :attr:`lock`; every child is
started from one long-lived thread (PR_SET_PDEATHSIG follows the thread).

It offers what :class:`endpoint.agent.Agent` uses of an interchange.
"""
from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from endpoint.execute import failure
from endpoint.multiuser.audit import AuditLog
from endpoint.multiuser.children import Child
from endpoint.multiuser.mapper import Account, Mapper, Unmapped
from endpoint.multiuser.render import TemplateError, fingerprint, render
from endpoint.multiuser.site_config import SiteConfig
from funcx.errors import (
    IdentityUnmapped,
    UserEndpointConfigInvalid,
    UserEndpointLimit,
    UserEndpointStartFailed,
)
from funcx.protocol import error_codes
from funcx.protocol.messages import Result, Task
from funcx.protocol.user_config import UserConfigError

log = logging.getLogger("funcx.multiuser.router")
#: the state file `funcx-endpoint status` reads (children, by name)
CHILDREN_FILE = "children.json"
#: how often the state file is rewritten while nothing else changes (s)
STATE_EVERY_S = 1.0
#: restarts of a child whose manager never registered before its tasks fail
START_ATTEMPTS = 3


class _NoFeed:
    """The agent's per-thread feeder: the router needs no wake-up socket."""

    def send(self, _: bytes) -> None:
        pass

    def close(self, linger: int | None = None) -> None:
        pass


class _Keys:
    manager_file = Path("/nonexistent")  # no blocks: nothing reads it


class Router:
    """Routes tasks to per-user children; see the module docstring."""

    def __init__(self, cfg: SiteConfig, on_output: Callable[[list], None], run_dir: Path,
                 log_dir: Path, heartbeat_period: float, heartbeat_threshold: float,
                 max_retries: int, max_inflight: int = 0):
        """``max_inflight``: the agent's window (tasks it holds at once); one
        account may hold at most half of it, whatever ``max_tasks_per_user`` says."""
        self.cfg, self.on_output, self.run_dir, self.log_dir = cfg, on_output, run_dir, log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.hb = (heartbeat_period, heartbeat_threshold, max_retries)
        self.mapper = Mapper(cfg)
        self.audit = AuditLog(cfg.directory / "audit.log")
        self.children: dict[tuple[str, str], Child] = {}
        #: guards self.children and the state file; held only for bookkeeping
        self.lock = threading.RLock()
        #: one placement at a time (mapping, rendering, starting run under it)
        self.place_lock = threading.Lock()
        #: the one thread every child process is started from (see _start)
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="child-starter")
        self.stop_event = threading.Event()
        self.endpoint_id = ""
        self.keys = _Keys()
        self.port, self.url = 0, "(multi-user: one interchange per child)"
        self.local_url: str | None = None  # its children's interchanges have their own
        self.stats: dict[str, int] = {"refused": 0, "children_started": 0, "children_idled": 0}
        self.retired_blocks: set[str] = set()
        self.max_tasks_per_user = cfg.max_tasks_per_user
        if max_inflight and self.max_tasks_per_user > max_inflight // 2:
            self.max_tasks_per_user = max(1, max_inflight // 2)
            log.warning("max_tasks_per_user %d is more than half the agent's window of %d "
                        "tasks (max_inflight): %d is used", cfg.max_tasks_per_user,
                        max_inflight, self.max_tasks_per_user)
        #: starts a child may make without a manager registering before its tasks fail
        self.start_attempts = START_ATTEMPTS

    # ------------------------------------------------------- interchange API
    def feeder(self) -> _NoFeed:
        return _NoFeed()

    def submit(self, tasks: list[Task], wake: Any = None) -> None:
        """Place every task with its submitter's child, or fail it alone."""
        groups: dict[tuple[str, str], list[Task]] = {}
        failed: list[Result] = []
        #: one submit's tasks share identity and config: place them once
        placed: dict[str, Child | Exception] = {}
        #: tasks in flight per account, this submit's included
        held: dict[str, int] = {}
        # mapping (maybe a program), rendering and starting a child run outside
        # self.lock, so tend / cancel / status never wait on them (place_lock only
        # keeps two placements from starting the same child twice)
        with self.place_lock:
            for t in tasks:
                key = json.dumps([t.identity, t.user_endpoint_config], sort_keys=True)
                if key not in placed:
                    try:
                        placed[key] = self._child_for(t)
                    except (Unmapped, UserConfigError, TemplateError, _Limit,
                            _StartFailed) as e:
                        placed[key] = e
                    except Exception as e:  # noqa: BLE001 - never stop the agent's reader
                        log.exception("placing task %s failed", t.task_id)
                        placed[key] = _StartFailed(f"the endpoint could not place the task "
                                                   f"({type(e).__name__}); see its log")
                child_or_error = placed[key]
                if isinstance(child_or_error, Exception):
                    failed.append(self._refuse(t, child_or_error))
                    continue
                child = child_or_error
                acct = child.account.name
                if acct not in held:
                    with self.lock:
                        held[acct] = sum(c.in_flight() for (name, _), c in
                                         self.children.items() if name == acct)
                if held[acct] >= self.max_tasks_per_user:
                    failed.append(self._refuse(t, _Limit(
                        f"account {acct!r} has {held[acct]} task(s) in flight on this "
                        f"endpoint, its max_tasks_per_user ({self.max_tasks_per_user}): "
                        "submit more once some finish")))
                    continue
                held[acct] += 1
                groups.setdefault((child.account.name, child.fingerprint), []).append(t)
            with self.lock:
                for child_key, ts in groups.items():
                    target = self.children.get(child_key)  # tend may have ended it since
                    if target is None:
                        failed += [self._refuse(t, _StartFailed(
                            "the child endpoint ended while the task was placed; submit "
                            "it again")) for t in ts]
                        continue
                    for t in ts:
                        self.audit.record("dispatched", task_id=t.task_id,
                                          function_id=t.function_id,
                                          identity=t.identity.get("username"),
                                          identity_id=t.identity.get("id"),
                                          account=target.account.name,
                                          uid=target.account.uid, child=target.name,
                                          child_pid=target.proc.pid if target.proc else None)
                    target.submit(ts)
        if failed:
            self.on_output(failed)

    def cancel(self, task_ids: list[str], wake: Any = None) -> None:
        with self.lock:
            for child in self.children.values():
                child.cancel(task_ids)

    def retire_blocks(self, block_ids: set[str]) -> None:
        pass

    @property
    def managers(self) -> dict:
        out: dict = {}
        for child in list(self.children.values()):
            out.update(child.interchange.managers)
        return out

    @property
    def idle_since(self) -> float:
        return min([c.interchange.idle_since for c in list(self.children.values())]
                   or [time.monotonic()])

    def outstanding(self) -> int:
        return sum(c.outstanding() for c in list(self.children.values()))

    def busy_blocks(self) -> set[str]:
        return {c.name for c in list(self.children.values()) if c.outstanding()}

    def snapshot(self) -> dict:
        """The children's interchanges summed: counts only, since the heartbeat
        is what every user of a public endpoint sees in its status (no account,
        uid, identity, pid, option or log path; no per-child manager names, which
        carry the account).  The detail is in children.json on the host, which
        `funcx-endpoint status` reads."""
        out: dict[str, Any] = {"managers": 0, "total_workers": 0, "idle_workers": 0,
                               "pending_tasks_in_interchange": 0, "running_tasks": 0,
                               "manager_details": [], "multi_user": True, "children": 0}
        for child in list(self.children.values()):
            snap = child.interchange.snapshot()
            for k in ("managers", "total_workers", "idle_workers",
                      "pending_tasks_in_interchange", "running_tasks"):
                out[k] += int(snap.get(k, 0))
            out["children"] += 1
        return out

    # ---------------------------------------------------------------- placing
    def _child_for(self, t: Task) -> Child:
        if not t.identity:
            raise Unmapped("the task carries no identity (a service before multi-user "
                           "endpoints, or a submit that bypassed it)")
        account = self.mapper.map(t.identity)
        options = render(self.cfg.template, self.cfg.schema, t.user_endpoint_config or {})
        fp = fingerprint(options)
        key = (account.name, fp)
        with self.lock:
            child = self.children.get(key)
            if child is not None:
                return child
            self._check_limits(account)
        child = Child(account, t.identity, fp, options, self.endpoint_id, self.run_dir,
                      self.log_dir, self.on_output, *self.hb, python=self.cfg.child_python)
        try:
            self._start(child)
        except (OSError, subprocess.SubprocessError) as e:
            # e.g. the account cannot execute child_python (OSError), or the
            # preexec step failed (SubprocessError): nothing half-started is kept
            child.stop()
            why = (f"{e.strerror} ({e.filename})" if isinstance(e, OSError)
                   else type(e).__name__)
            raise _StartFailed(f"the child endpoint for account {account.name!r} could not "
                               f"start: {why}; see multi_user.yaml's child_python") from None
        with self.lock:
            self.children[key] = child
            self.stats["children_started"] += 1
            self._save()
        self.audit.record("child_started", account=account.name, uid=account.uid,
                          identity=t.identity.get("username"), child=child.name,
                          child_pid=child.proc.pid if child.proc else None)
        return child

    def _start(self, child: Child) -> None:
        """Start ``child``'s process from the one long-lived starter thread: Linux
        sends PR_SET_PDEATHSIG when the *thread* that forked ends, so no child is
        started from a thread that may end before the parent (review 19 L2)."""
        self._starter.submit(child.start_process).result()

    def _check_limits(self, account: Account) -> None:
        mine = sum(1 for (name, _) in self.children if name == account.name)
        if mine >= self.cfg.max_children_per_user:
            raise _Limit(f"account {account.name!r} has {mine} child endpoint(s), this "
                         f"endpoint's max_children_per_user ({self.cfg.max_children_per_user}): "
                         "use a user_endpoint_config already running, or wait for one to idle out")
        if len(self.children) >= self.cfg.max_children:
            raise _Limit(f"this endpoint runs {len(self.children)} child endpoints, its "
                         f"max_children ({self.cfg.max_children}): try again later")

    def _refuse(self, t: Task, e: Exception) -> Result:
        self.stats["refused"] += 1
        who = t.identity.get("username") or t.identity.get("id") or "(none)"
        if isinstance(e, Unmapped):
            exc: Exception = IdentityUnmapped(str(e))
            code = error_codes.IDENTITY_UNMAPPED
        elif isinstance(e, _Limit):
            exc, code = UserEndpointLimit(str(e)), error_codes.USER_ENDPOINT_LIMIT
        elif isinstance(e, _StartFailed):
            exc, code = UserEndpointStartFailed(str(e)), error_codes.USER_ENDPOINT_START_FAILED
        else:
            exc, code = UserEndpointConfigInvalid(str(e)), error_codes.USER_ENDPOINT_CONFIG_INVALID
        log.warning("task %s of identity %s refused: %s", t.task_id, who, e)
        self.audit.record("refused", task_id=t.task_id, identity=t.identity.get("username"),
                          identity_id=t.identity.get("id"), code=code, reason=str(e))
        return failure(t, exc, error_code=code)

    # ------------------------------------------------------------------- loop
    def run(self) -> None:
        """Tend the children until :attr:`stop_event`: idle ones stopped, dead ones
        with work restarted (at most once a second each), the state file kept
        (rewritten at least every STATE_EVERY_S, for `funcx-endpoint status`)."""
        saved = 0.0
        while not self.stop_event.wait(0.2):
            try:
                now = time.monotonic()
                self.tend(now)
                if now - saved >= STATE_EVERY_S:
                    with self.lock:
                        self._save()
                    saved = now
            except Exception:
                log.exception("tending the children failed; continuing")

    def tend(self, now: float) -> None:
        """Decide under the lock; stop and restart children outside it."""
        changed = False
        ended: list[tuple[Child, str]] = []
        restart: list[Child] = []
        with self.lock:
            for key, child in list(self.children.items()):
                if child.interchange.managers:  # a manager registered: it starts fine
                    child.starts_unregistered = 0
                if child.alive():
                    if child.idle_for(now) >= self.cfg.idle_timeout_s:
                        log.info("child %s idle for %.0fs: stopping it", child.name,
                                 child.idle_for(now))
                        ended.append((self._forget(key), "idle"))
                        self.stats["children_idled"] += 1
                        changed = True
                    continue
                # a child that keeps dying is restarted after 1, 2, 4 ... 60 s; its tasks
                # fail once the interchange's retries on a lost manager are spent
                backoff = min(2.0 ** child.restarts, 60.0)
                if child.in_flight() and child.starts_unregistered > self.start_attempts:
                    n = child.fail_pending(UserEndpointStartFailed(
                        f"the child endpoint for account {child.account.name!r} exited "
                        f"{child.starts_unregistered} times before its manager registered; "
                        "the site administrator finds why in its log"),
                        error_codes.USER_ENDPOINT_START_FAILED)
                    log.error("child %s exited %d times without a manager registering: "
                              "%d task(s) failed, child ended (log: %s)", child.name,
                              child.starts_unregistered, n, child.log_path)
                    ended.append((self._forget(key), "never registered"))
                    changed = True
                elif ((child.outstanding() or child.in_flight())
                      and now - child.launched >= backoff):
                    log.error("child %s exited (%s) with %d task(s) outstanding: restarting "
                              "it (log: %s)", child.name, child.proc.returncode if child.proc
                              else "?", child.outstanding(), child.log_path)
                    child.restarts += 1
                    restart.append(child)
                elif not child.outstanding() and not child.in_flight():
                    ended.append((self._forget(key), "exited"))
                    changed = True
        for child, why in ended:
            self._end(child, why)
        for child in restart:
            try:
                self._start(child)
            except (OSError, subprocess.SubprocessError) as e:  # tried again after backoff
                log.error("child %s could not be restarted (%s)", child.name,
                          type(e).__name__)
            changed = True
        if changed:
            with self.lock:
                self._save()

    def _forget(self, key: tuple[str, str]) -> Child:
        """Take a child off the books (caller holds the lock); stop it with _end."""
        return self.children.pop(key)

    def _end(self, child: Child, why: str) -> None:
        """Stop a child already forgotten (outside the lock: it waits for the process)."""
        child.stop()
        self.audit.record("child_stopped", account=child.account.name, child=child.name,
                          reason=why, tasks=child.tasks_run)

    def _save(self) -> None:
        path = self.run_dir / CHILDREN_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([c.view() for c in self.children.values()]))
        tmp.replace(path)

    def close(self) -> None:
        """Stop every child (the agent is stopping)."""
        self.stop_event.set()
        with self.lock:
            children = [self._forget(key) for key in list(self.children)]
            self._save()
        for child in children:
            self._end(child, "endpoint stopped")
        self._starter.shutdown(wait=False)
        self.audit.close()


class _Limit(Exception):
    """A limit on children is reached."""


class _StartFailed(Exception):
    """A child's process could not be started."""
