"""Supervisors own their children (DESIGN decision 10), endpoint side.

Each test runs its own service and endpoint, submits >= 1,000 tasks, kills a
supervising process (kill -9) once a share of the batch has finished, and
checks by *process tree* (the descendants of the killed process, taken just
before the kill) that nothing it started lingers; then every task must end
exactly once with the right result and nothing may stay pending (the
fault suite's FaultBatch.verify).
"""
from __future__ import annotations

import os
import time

import psutil
import pytest
from faultlib import FaultBatch, still_running, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(240)]

N = int(os.environ.get("FUNCX_FAULT_TASKS", "1000"))
SHARE = 0.3
#: how soon the killed process's descendants must be gone: well inside the
#: fabric's heartbeat_threshold (3 s), so a manager that merely noticed the
#: silence of a dead interchange would not pass
GONE_WITHIN_S = 2.5


def described(procs: list[psutil.Process]) -> str:
    out = []
    for p in procs:
        try:
            out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            out.append(f"{p.pid} (gone)")
    return "; ".join(out)


def tree_of(p: psutil.Process) -> list[psutil.Process]:
    return [c for c in p.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]


def running(procs: list[psutil.Process], module: str) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if module in p.cmdline():
                out.append(p)
        except psutil.Error:
            pass
    return out


def kill_and_see_tree_go(fb: FaultBatch, victim: psutil.Process, tree: list[psutil.Process],
                         what: str) -> None:
    """SIGKILL ``victim``; every process of ``tree`` must be gone within GONE_WITHIN_S."""
    victim.kill()
    fb.fault_now()
    t0 = time.monotonic()
    assert wait_until(lambda: not still_running(tree), GONE_WITHIN_S, 0.05), \
        f"outlived {what}: {described(still_running(tree))}"
    fb.row.extra["descendants_gone_s"] = round(time.monotonic() - t0, 2)


def test_daemon_killed_alone_then_started(make_fabric):
    fab = make_fabric()
    fb = FaultBatch(fab, "kill -9 the endpoint daemon alone, start it", N)
    tids = fb.submit(fb.items)
    fb.wait_share(tids[: int(len(tids) * SHARE)])
    daemon = psutil.Process(fab.agent_pid())
    tree = tree_of(daemon)
    assert running(tree, "endpoint.manager"), \
        f"the block's manager is not in the daemon's tree: {described(tree)}"
    assert running(tree, "endpoint.worker"), f"no workers in the daemon's tree: {described(tree)}"
    kill_and_see_tree_go(fb, daemon, tree, "the daemon")
    fab.start_endpoint()  # the same endpoint id; unfinished tasks are reclaimed
    assert fab.agent_pid() != daemon.pid
    fb.wait_all()
    fb.verify()  # exactly one completion per task: no lingering manager ran any twice


def test_block_script_killed(make_fabric):
    fab = make_fabric()
    fb = FaultBatch(fab, "kill -9 a manager's block script", N)
    tids = fb.submit(fb.items)
    fb.wait_share(tids[: int(len(tids) * SHARE)])
    daemon = psutil.Process(fab.agent_pid())
    [mgr] = fab.managers()
    script = mgr.parent()
    assert script is not None and "bash" in script.name(), script
    tree = [mgr, *tree_of(mgr)]
    assert running(tree, "endpoint.worker"), f"no workers under the manager: {described(tree)}"
    kill_and_see_tree_go(fb, script, tree, "the block script")
    assert wait_until(lambda: [m for m in fab.managers() if m.pid != mgr.pid], 60), \
        "no new block after the old one died"
    fb.wait_all()
    fb.verify()
    # the daemon (a child subreaper: the dead block's orphans came to it) reaped them
    assert wait_until(lambda: not [c for c in daemon.children()
                                   if c.status() == psutil.STATUS_ZOMBIE], 5), \
        f"zombies under the daemon: {[c.pid for c in daemon.children()]}"
