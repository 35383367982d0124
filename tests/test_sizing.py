"""Web workers and ingesters sized to the host's cores (backend/sizing.py),
and the supervisor running ``INGESTERS`` ingesters, each restarted when it dies."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from backend import sizing


def test_defaults_follow_the_cores():
    assert [sizing.default_web_workers(c) for c in (1, 2, 4, 8, 16, 64)] == [2, 2, 2, 4, 8, 32]
    assert [sizing.default_ingesters(c) for c in (1, 2, 4, 8, 16, 64)] == [1, 1, 1, 2, 4, 16]


def test_an_explicit_number_wins_and_zero_means_sized_to_the_cores(monkeypatch):
    monkeypatch.setattr(sizing, "cores", lambda: 16)
    monkeypatch.setenv("FUNCX_WEB_WORKERS", "3")
    monkeypatch.setenv("FUNCX_INGESTERS", "5")
    assert (sizing.web_workers(), sizing.ingesters()) == (3, 5)
    monkeypatch.setenv("FUNCX_WEB_WORKERS", "0")
    monkeypatch.delenv("FUNCX_INGESTERS")
    assert (sizing.web_workers(), sizing.ingesters()) == (8, 4)
    assert [sizing.ingester_name(i) for i in range(3)] == ["ingester", "ingester-1", "ingester-2"]


def test_cores_is_this_process_s_share_of_the_host():
    assert 1 <= sizing.cores() <= (os.cpu_count() or 1)


def _cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
    e.update({"FUNCX_HOME": str(home), **env})
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args], env=e,
                          capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)


def _components(home: Path) -> dict[str, dict]:
    st = json.loads(_cli(home, "service", "status", "--format", "json").stdout)
    return {c["name"]: c for c in st["components"]}


def _until(pred, timeout: float, what: str):
    """Poll the supervisor's record and logs (another process: no event to
    wait on) until ``pred`` holds."""
    deadline = time.monotonic() + timeout
    while not (got := pred()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        threading.Event().wait(0.2)
    return got


@pytest.mark.timeout(240)
@pytest.mark.slow  # a whole service started and an ingester killed (~7 s): the slow CI step
def test_the_supervisor_runs_INGESTERS_ingesters_and_restarts_a_dead_one(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    p = _cli(home, "service", "start", "--detach", "--port", "0", FUNCX_INGESTERS="3")
    assert p.returncode == 0, p.stderr
    logs = home / "service" / "logs"

    def started(name: str) -> int:
        path = logs / f"{name}.log"
        return path.read_text().count(" started") if path.exists() else 0

    try:
        comps = _components(home)
        names = ["ingester", "ingester-1", "ingester-2"]
        assert set(names) <= comps.keys() and "ingester-3" not in comps, comps.keys()
        assert all(comps[n]["alive"] and comps[n]["restarts"] == 0 for n in names)
        assert len({comps[n]["pid"] for n in names}) == 3
        text = _cli(home, "service", "status").stdout
        assert all(n in text for n in names), text
        # each its own process, consumer and log
        _until(lambda: all(started(n) == 1 for n in names), 60, "each ingester to start")
        victim = comps["ingester-1"]["pid"]
        os.kill(victim, signal.SIGKILL)
        now = _until(lambda: (c := _components(home)["ingester-1"])["restarts"] == 1
                     and c["alive"] and c["pid"] != victim and c, 60, "ingester-1's restart")
        assert now["pid"] != victim
        _until(lambda: started("ingester-1") == 2, 60, "the new ingester-1 to start")
        others = _components(home)
        assert all(others[n]["restarts"] == 0 and others[n]["pid"] == comps[n]["pid"]
                   for n in ("ingester", "ingester-2"))
    finally:
        _cli(home, "service", "stop")
