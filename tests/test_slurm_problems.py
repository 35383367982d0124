"""Blocks that fail on a real (one-node) Slurm cluster are reported with
Slurm's own words and retried with back-off; the interchange address is
detected (Slurm is a remote provider: never 127.0.0.1) and works.

The cluster is tests/test_slurm.py's fixture (Debian's Slurm, started by
hand); skipped, with the reason, where Slurm is not installed or not root.
"""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from test_slurm import slurm, squeue_jobs  # noqa: F401 - the fixture is used by name

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CONFIG = '''
from parsl.launchers import SingleNodeLauncher
from parsl.providers import SlurmProvider

from endpoint.config import Config

config = Config(
    provider=SlurmProvider(partition={partition!r}, nodes_per_block=1, init_blocks=0,
                           min_blocks=0, max_blocks=1, walltime="00:10:00", exclusive=False,
                           cmd_timeout=30, launcher=SingleNodeLauncher()),
    max_workers_per_node=1,
    max_idletime=2,
    heartbeat_period=0.5,
    heartbeat_threshold=5,
)
'''


def square(x):
    return x * x


def wait_until(predicate, timeout: float):
    tick = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        tick.wait(0.25)


def run_endpoint(partition: str):
    from endpoint import daemon
    from endpoint.paths import EndpointDir

    name = f"slurm-prob-{uuid.uuid4().hex[:6]}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, exist_ok=True)
    ep.config_file.write_text(CONFIG.format(partition=partition))
    return name, ep, daemon.start(name)


def test_sbatch_refusing_the_block_is_reported_with_its_words_and_backed_off(
        slurm, service, fxc, http, monkeypatch):  # noqa: F811 - the fixture
    """A partition that does not exist: sbatch refuses every block.  The
    endpoint stays up, its status and the waiting task say what sbatch said,
    and it tries again after 1 s, then 2 s, not every round."""
    from endpoint import daemon

    monkeypatch.setenv("FUNCX_BLOCK_RETRY_MIN_S", "1")
    monkeypatch.setenv("FUNCX_BLOCK_RETRY_MAX_S", "4")
    name, ep, eid = run_endpoint("no-such-partition")
    try:
        tid = fxc.run(4, endpoint_id=eid, function_id=fxc.register_function(square))

        def found():
            st = fxc.get_endpoint_status(eid)
            return [p for p in st["details"]["problems"] if p["kind"] == "submit_failed"]

        problems = wait_until(found, 60)
        assert problems, ep.log_file.read_text()[-3000:]
        assert "partition" in problems[0]["message"].lower(), problems
        doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
        assert doc["status"].startswith("waiting-for"), doc
        assert any("partition" in p["message"].lower() for p in doc["details"]["problems"])
        assert squeue_jobs() == []
        # the log shows the back-off growing: 1 s, 2 s, 4 s...
        assert wait_until(lambda: "next block submission in 4s" in ep.log_file.read_text(), 60)
        text = ep.log_file.read_text()
        assert "next block submission in 1s" in text and "next block submission in 2s" in text
    finally:
        daemon.stop(name)
        fxc.delete_endpoint(eid)


def test_slurm_managers_are_told_a_routable_address(slurm, service, fxc):  # noqa: F811
    """With the default address ("detect") a Slurm block's manager is told
    the routable address, registers, and runs the task."""
    from endpoint import daemon
    from endpoint.addresses import detect_routable, is_loopback

    routable = detect_routable()
    if is_loopback(routable):
        pytest.skip("this host has no routable address")
    name, ep, eid = run_endpoint("debug")
    try:
        tid = fxc.run(6, endpoint_id=eid, function_id=fxc.register_function(square))
        assert fxc.wait([tid], timeout=120)[tid]["result"] == 36
        st = fxc.get_endpoint_status(eid)["details"]
        assert st["interchange_address"].startswith(f"tcp://{routable}:"), st
        assert st["problems"] == [], st
    finally:
        daemon.stop(name)
        fxc.delete_endpoint(eid)
    assert wait_until(lambda: squeue_jobs() == [], 60), squeue_jobs()
