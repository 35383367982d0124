"""funcx/lifecycle.py: children die with their parent; records survive pid reuse."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import psutil

from funcx.lifecycle import ProcessRecord, end_tree


def test_a_child_dies_when_its_parent_is_killed(tmp_path):
    """A parent starts a sleeping child with child_preexec, then is SIGKILLed:
    the child is gone too (not re-parented to init)."""
    script = textwrap.dedent("""
        import subprocess, sys, time
        from funcx.lifecycle import child_preexec
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                                 preexec_fn=child_preexec())
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    child = psutil.Process(child_pid)
    parent.kill()
    parent.wait()
    gone, alive = psutil.wait_procs([child], timeout=10)
    assert child in gone and not alive


def test_a_record_does_not_name_a_reused_pid():
    me = ProcessRecord.of(os.getpid())
    assert me.process() is not None
    assert ProcessRecord.from_dict(me.to_dict()) == me
    assert ProcessRecord(me.pid, me.started - 100).process() is None  # another process's pid
    assert ProcessRecord.from_dict({"pid": "x"}) is None


def test_end_tree_ends_every_descendant():
    script = ("import subprocess, sys, time; "
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              "print(c.pid, flush=True); time.sleep(120)")
    top = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    grandchild = psutil.Process(int(top.stdout.readline()))
    end_tree(psutil.Process(top.pid), timeout=5)
    top.wait(10)
    assert not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE
