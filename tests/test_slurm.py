"""An endpoint on a real (one-node) Slurm cluster: a block through sbatch,
tasks inside it, scale-in when idle, a clean stop.

The cluster comes from tests/fixtures/slurm_cluster.sh (Debian's Slurm 22.05,
munged/slurmctld/slurmd started by hand).  Skipped, with the reason, where
Slurm is not installed or we are not root.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

SCRIPT = Path(__file__).parent / "fixtures" / "slurm_cluster.sh"
NAME = "slurm-ep"

CONFIG = '''
from parsl.launchers import {launcher}
from parsl.providers import SlurmProvider

from endpoint.config import Config

config = Config(
    provider=SlurmProvider(partition="debug", nodes_per_block=1, init_blocks=0, min_blocks=0,
                           max_blocks=1, walltime="00:10:00", exclusive=False,
                           cmd_timeout=30, launcher={launcher}()),
    max_workers_per_node=2,
    max_idletime=2,
    heartbeat_period=0.5,
    heartbeat_threshold=5,
    working_dir={workdir!r},
)
'''


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip("Slurm is not installed (tests/fixtures/slurm_cluster.sh install)")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged by hand needs root")
    state = tmp_path_factory.mktemp("slurm")
    p = subprocess.run(["bash", str(SCRIPT), "start", str(state)], capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        pytest.fail(f"the Slurm fixture did not start: {p.stderr}")
    conf = p.stdout.strip().split("=", 1)[1]
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf  # the endpoint daemon (and its sbatch) inherit it
    yield conf
    subprocess.run(["bash", str(SCRIPT), "stop", str(state)], timeout=60)
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old


def squeue_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True,
                         timeout=30).stdout
    return [line for line in out.splitlines() if line.strip()]


def wait_until(predicate, timeout: float) -> bool:
    """Bounded wait for a condition only polling can observe (Slurm's queue)."""
    tick = threading.Event()
    for _ in range(int(timeout / 0.25)):
        if predicate():
            return True
        tick.wait(0.25)
    return predicate()


def where_am_i(i):
    import os
    import socket

    return i, socket.gethostname(), os.environ.get("SLURM_JOB_ID")


@pytest.mark.parametrize("launcher", ["SingleNodeLauncher", "SrunLauncher"])
def test_endpoint_on_slurm(slurm, service, fxc, tmp_path, launcher):
    from endpoint import daemon
    from endpoint.paths import EndpointDir

    name = f"{NAME}-{launcher.lower()}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, exist_ok=True)
    ep.config_file.write_text(CONFIG.format(launcher=launcher, workdir=str(tmp_path)))
    eid = daemon.start(name)
    try:
        assert squeue_jobs() == []  # init_blocks=0: no job until there is work
        fid = fxc.register_function(where_am_i)
        batch = fxc.create_batch()
        for i in range(10):
            batch.add(i, endpoint_id=eid, function_id=fid)
        ids = fxc.batch_run(batch)
        results = fxc.wait(ids, timeout=120)
        values = [results[t]["result"] for t in ids]
        assert [v[0] for v in values] == list(range(10))
        job_ids = {v[2] for v in values}
        assert len(job_ids) == 1 and None not in job_ids  # all ran inside one sbatch job
        # idle past max_idletime: the strategy cancels the block
        assert wait_until(lambda: squeue_jobs() == [], timeout=60), squeue_jobs()
        # work again: a new block comes up for it
        tid = fxc.run(99, endpoint_id=eid, function_id=fid)
        again = fxc.wait([tid], timeout=120)[tid]["result"]
        assert again[0] == 99 and again[2] not in job_ids
    finally:
        daemon.stop(name)
    assert wait_until(lambda: squeue_jobs() == [], timeout=60), squeue_jobs()
