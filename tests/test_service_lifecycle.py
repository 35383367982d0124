"""The service's lifecycle as an operator sees it (DESIGN decision 10, issue 14):
``start`` succeeds only when the supervisor reports every component ready and
otherwise names the one that failed and its log; ``status`` lists each
component; a supervisor's children die with it; a starting supervisor ends
what a dead predecessor left."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from funcx.lifecycle import ProcessRecord

pytestmark = pytest.mark.timeout(180)


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
    e.update({"FUNCX_HOME": str(home), **env})
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args], env=e,
                          capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    yield h
    cli(h, "service", "stop")


def test_start_names_redis_when_it_cannot_be_reached(home):
    p = cli(home, "service", "start", "--detach", "--port", "0",
            FUNCX_REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    assert p.returncode != 0
    assert "redis failed to start" in p.stderr, p.stderr
    assert cli(home, "service", "status").returncode == 1  # nothing left running


@pytest.mark.slow
def test_start_names_web_and_its_log_when_the_port_is_taken(home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = cli(home, "service", "start", "--detach", "--port", str(port))
    assert p.returncode != 0
    assert "web failed to start" in p.stderr, p.stderr
    assert str(home / "service" / "logs" / "web.log") in p.stderr
    assert cli(home, "service", "status").returncode == 1
    # nothing of that attempt lingers: the record names no live process
    rec = json.loads((home / "service" / "service.json").read_text())
    for c in rec["components"].values():
        r = ProcessRecord.from_dict(c)
        assert r is None or r.process() is None, c


@pytest.mark.slow
def test_status_lists_components_and_children_die_with_the_supervisor(home):
    assert cli(home, "service", "start", "--detach", "--port", "0").returncode == 0
    st = json.loads(cli(home, "service", "status", "--format", "json").stdout)
    assert st["running"] and st["ready"] and st["responding"]
    comps = {c["name"]: c for c in st["components"]}
    assert {"redis", "web", "ingester", "rq-0"} <= comps.keys()
    for c in comps.values():
        assert c["alive"] and c["pid"] and c["uptime_s"] is not None and c["restarts"] == 0
    text = cli(home, "service", "status").stdout
    for name in ("redis", "web", "ingester", "rq-0"):
        assert name in text
    # kill -9 of the supervisor alone: every descendant goes with it
    sup = psutil.Process(st["pid"])
    tree = [sup, *sup.children(recursive=True)]
    sup.send_signal(signal.SIGKILL)
    _, alive = psutil.wait_procs(tree, timeout=30)
    assert not alive, [(p.pid, p.name()) for p in alive]
    # and a new start succeeds with a new supervisor
    p = cli(home, "service", "start", "--detach", "--port", "0")
    assert p.returncode == 0, p.stderr
    assert json.loads(cli(home, "service", "status", "--format", "json").stdout)["pid"] != sup.pid


def test_a_starting_supervisor_ends_what_a_dead_predecessor_left(tmp_path):
    from backend.supervisor import end_predecessor

    orphan = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time;"
                               "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
                               "time.sleep(120)"], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(orphan.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = psutil.Process(orphan.pid).children()[0]
        stale = ProcessRecord.of(bystander.pid)
        record = {"supervisor": {"pid": 999999999, "started": 1.0},
                  "components": {"web": {"name": "web", **ProcessRecord.of(orphan.pid).to_dict()},
                                 # same pid, another start time: a reused pid, left alone
                                 "rq-0": {"name": "rq-0", "pid": stale.pid,
                                          "started": stale.started - 100}}}
        assert end_predecessor(record) == [orphan.pid]
        assert orphan.wait(10) is not None
        psutil.wait_procs([grandchild], timeout=10)
        assert not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE
        assert bystander.poll() is None
    finally:
        for p in (orphan, bystander):
            if p.poll() is None:
                p.kill()
                p.wait()
