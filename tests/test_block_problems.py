"""Blocks that fail are reported and retried with back-off; the interchange
address managers are told is reachable.  Real processes throughout: each test
runs its own endpoint daemon against the session's service, with providers
that really fail (a submit that raises, a block whose worker_init exits, a
block whose manager never starts) or a provider that is not a LocalProvider
(so the address is detected as for a remote cluster) but runs blocks here.

What only the agent's periodic heartbeat or scaling round can tell (the
status document, the next submission) is awaited by bounded loops.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.faults.faultlib import wait_until as poll_until
from tests.live import endpoint_with_config

WAIT_S = 60

PREAMBLE = '''from parsl.providers import LocalProvider

from endpoint.config import Config


class Elsewhere:
    """Stands for a remote provider (Slurm...): not a LocalProvider, so the
    interchange address is detected as for one, but its blocks run here."""

    def __init__(self, **kw):
        self.inner = LocalProvider(**kw)
        self.init_blocks = kw.get("init_blocks", 1)
        self.min_blocks = kw.get("min_blocks", 0)
        self.max_blocks = kw.get("max_blocks", 1)
        self.script_dir = None

    def submit(self, command, tasks_per_node, job_name="block"):
        self.inner.script_dir = self.script_dir
        return self.inner.submit(command, tasks_per_node, job_name)

    def status(self, job_ids):
        return self.inner.status(job_ids)

    def cancel(self, job_ids):
        return self.inner.cancel(job_ids)


class NoSbatch(LocalProvider):
    """A provider whose every submission fails, like a missing `sbatch`."""

    def submit(self, command, tasks_per_node, job_name="block"):
        import time

        with open({attempts!r}, "a") as f:
            f.write(repr(time.time()) + "\\n")
        raise RuntimeError("sbatch: command not found (password=hunter2)")


'''


def square(x):
    return x * x


def wait_until(predicate, timeout: float = WAIT_S, step: float = 0.2):
    """Bounded wait for what only a periodic heartbeat or round can tell."""
    return poll_until(predicate, timeout, step)


def endpoint_with(fxc, tag: str, config: str, attempts: Path):
    """An endpoint whose config.py ends with ``config``; started, then stopped
    and deleted."""
    return endpoint_with_config(fxc, f"blk-{tag}", PREAMBLE.format(attempts=str(attempts)) + config)


def problems(fxc, eid: str, kind: str) -> list[dict]:
    st = fxc.get_endpoint_status(eid)
    return [p for p in st["details"].get("problems", []) if p.get("kind") == kind]


def attempt_times(path: Path) -> list[float]:
    try:
        return [float(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def assert_backs_off(times: list[float], first: float) -> None:
    """Each gap at least the doubling back-off (less a scheduling margin)."""
    gaps = [b - a for a, b in zip(times, times[1:])]
    expected = [first * 2 ** i for i in range(len(gaps))]
    assert all(g >= e - 0.3 for g, e in zip(gaps, expected)), (gaps, expected)


@pytest.fixture
def fast_backoff(monkeypatch):
    """Back-off of 1, 2, 4 s (the daemon inherits the environment)."""
    monkeypatch.setenv("FUNCX_BLOCK_RETRY_MIN_S", "1")
    monkeypatch.setenv("FUNCX_BLOCK_RETRY_MAX_S", "4")


@pytest.mark.slow  # an endpoint (or ingester) waited through timeouts: the slow CI step
def test_a_failing_submit_is_reported_everywhere_and_retried_with_backoff(
        fxc, http, tmp_path, fast_backoff):
    """A provider whose submit raises: the endpoint keeps running, the error
    text (credentials masked) is a problem in the endpoint's status, in the
    waiting task's details and in `funcx endpoint status`; submissions back
    off 1, 2, 4 s instead of every scaling round."""
    from typer.testing import CliRunner

    from funcx_cli.main import app

    attempts = tmp_path / "attempts"
    config = ("config = Config(provider=NoSbatch(init_blocks=0, min_blocks=0, max_blocks=1),\n"
              "                max_workers_per_node=1)\n")
    with endpoint_with(fxc, "nosbatch", config, attempts) as ep:
        fid = fxc.register_function(square)
        tid = fxc.run(3, endpoint_id=ep.eid, function_id=fid)
        found = wait_until(lambda: problems(fxc, ep.eid, "submit_failed"))
        assert found, "no submit_failed problem in the endpoint's status"
        [p] = found
        assert "RuntimeError: sbatch: command not found" in p["message"]
        assert "hunter2" not in p["message"] and p["block"] is None
        assert isinstance(p["since"], float) and abs(p["since"] - time.time()) < WAIT_S

        doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
        assert doc["status"].startswith("waiting-for"), doc
        assert any("sbatch: command not found" in q["message"]
                   for q in doc["details"]["problems"]), doc

        out = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["endpoint", "status", ep.eid])
        assert out.exit_code == 0, out.output
        assert "submit_failed" in out.output and "sbatch: command not found" in out.output
        assert "hunter2" not in out.output
        out = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["endpoint", "show", ep.eid])
        assert out.exit_code == 0 and "sbatch: command not found" in out.output, out.output
        out = CliRunner().invoke(app, ["endpoint", "show", ep.eid, "--format", "json"])
        assert out.exit_code == 0, out.output
        assert [q["kind"] for q in json.loads(out.output)["problems"]] == ["submit_failed"]

        times = wait_until(lambda: (t := attempt_times(attempts)) and len(t) >= 4 and t)
        assert times and len(times) >= 4, times
        assert_backs_off(times[:4], 1.0)
        # 1 + 2 + 4 s: at most one more attempt fits in the same span at 4 s
        span = times[3] - times[0]
        assert len([t for t in attempt_times(attempts) if t <= times[0] + span + 1]) <= 5
        assert fxc.get_task(tid)["pending"]


@pytest.mark.slow  # an endpoint (or ingester) waited through timeouts: the slow CI step
def test_a_block_that_exits_before_registering_is_reported_and_backed_off(fxc, tmp_path,
                                                                          fast_backoff):
    """A worker_init that exits: the block's job ends before its manager
    registers; that is a problem and the next block waits 1, 2, 4 s."""
    attempts = tmp_path / "attempts"
    config = (f"config = Config(provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),\n"
              f"                worker_init='echo $(date +%s.%N) >> {attempts}; exit 3',\n"
              f"                max_workers_per_node=1)\n")
    with endpoint_with(fxc, "exits", config, attempts) as ep:
        found = wait_until(lambda: problems(fxc, ep.eid, "never_registered"))
        assert found and "ended before its manager registered" in found[0]["message"], found
        times = wait_until(lambda: (t := attempt_times(attempts)) and len(t) >= 4 and t)
        assert times and len(times) >= 4, times
        assert_backs_off(times[:4], 1.0)
        log = ep.dir.log_file.read_text()
        assert "ended before its manager registered" in log


@pytest.mark.slow
def test_a_block_whose_manager_never_registers_is_cancelled_and_resubmitted(fxc, tmp_path,
                                                                           fast_backoff):
    """A block that runs but whose manager never registers (here: worker_init
    hangs) is reported after block_register_timeout, cancelled (its process
    tree ends) and a new block is submitted after the back-off."""
    attempts = tmp_path / "attempts"
    pids = tmp_path / "pids"
    config = (f"config = Config(provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),\n"
              f"                worker_init='echo $(date +%s.%N) >> {attempts}; "
              f"echo $$ >> {pids}; exec sleep 300',\n"
              f"                block_register_timeout=2, max_workers_per_node=1)\n")
    with endpoint_with(fxc, "hangs", config, attempts) as ep:
        found = wait_until(lambda: problems(fxc, ep.eid, "never_registered"))
        assert found and "ran 2s without its manager registering" in found[0]["message"], found
        assert found[0]["block"] == "0"
        first = int(pids.read_text().split()[0])
        assert wait_until(lambda: not psutil.pid_exists(first) or
                          psutil.Process(first).status() == psutil.STATUS_ZOMBIE, 15)
        times = wait_until(lambda: (t := attempt_times(attempts)) and len(t) >= 2 and t)
        assert times and len(times) >= 2
        assert times[1] - times[0] >= 2 + 1 - 0.3  # the timeout, then the back-off


def _manager_addrs(eid_dir: Path) -> set[str]:
    """The --addr of the managers whose key file is in this endpoint's dir."""
    out = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "endpoint.manager" in cmd and str(eid_dir) in cmd:
            out.update(re.findall(r"tcp://\S+", cmd))
    return out


@pytest.mark.parametrize("address", ["detect", "0.0.0.0"])
def test_a_remote_provider_is_told_a_routable_address(fxc, tmp_path, address):
    """Not a LocalProvider: managers are told the address of the interface
    that routes off this host (for 0.0.0.0 too), never loopback, and they
    reach the interchange there: a task runs."""
    from endpoint.addresses import detect_routable, is_loopback

    routable = detect_routable()
    if is_loopback(routable):
        pytest.skip("this host has no routable address")
    config = (f"config = Config(provider=Elsewhere(init_blocks=1, min_blocks=0, max_blocks=1),\n"
              f"                address={address!r}, max_workers_per_node=1)\n")
    with endpoint_with(fxc, "remote", config, tmp_path / "unused") as ep:
        fid = fxc.register_function(square)
        tid = fxc.run(7, endpoint_id=ep.eid, function_id=fid)
        fxc.wait([tid], timeout=WAIT_S)
        assert fxc.get_result(tid) == 49
        addrs = _manager_addrs(ep.dir.path)
        assert addrs and all(a.startswith(f"tcp://{routable}:") for a in addrs), addrs
        log = ep.dir.log_file.read_text()
        assert f"managers connect to tcp://{routable}:" in log
        assert problems(fxc, ep.eid, "address") == []
        details = fxc.get_endpoint_status(ep.eid)["details"]
        assert details["interchange_address"].startswith(f"tcp://{routable}:"), details


def test_loopback_with_a_remote_provider_is_a_problem(fxc, tmp_path):
    """An explicit 127.0.0.1 with a provider that runs managers elsewhere is
    logged as an error at start and shown as a problem."""
    config = ("config = Config(provider=Elsewhere(init_blocks=0, min_blocks=0, max_blocks=1),\n"
              "                address='127.0.0.1', max_workers_per_node=1)\n")
    with endpoint_with(fxc, "loop", config, tmp_path / "unused") as ep:
        found = wait_until(lambda: problems(fxc, ep.eid, "address"))
        assert found and "loopback" in found[0]["message"], found
        assert re.search(r"ERROR interchange address: .*loopback", ep.dir.log_file.read_text())


@pytest.mark.slow
def test_scale_in_is_not_an_error(fxc, tmp_path):
    """A block scaled in when idle: its managers' silence is logged at INFO,
    never as an ERROR "declared lost"."""
    config = ("config = Config(provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),\n"
              "                max_idletime=0.5, heartbeat_period=0.5, heartbeat_threshold=2,\n"
              "                max_workers_per_node=1)\n")
    with endpoint_with(fxc, "scalein", config, tmp_path / "unused") as ep:
        log = ep.dir.log_file
        assert wait_until(lambda: "cancelled blocks ['0']" in log.read_text())
        # the manager's silence is noticed after heartbeat_threshold (2 s)
        assert wait_until(lambda: "of scaled-in block 0 ended" in log.read_text(), timeout=10)
        ended = [line for line in log.read_text().splitlines() if "scaled-in block" in line]
        assert all(" INFO " in line for line in ended), ended
        assert "declared lost" not in log.read_text()


def test_a_task_waiting_for_an_offline_endpoint_says_so(fxc, http, tmp_path):
    """The task's details name the reason it waits: the endpoint is offline."""
    from endpoint import daemon

    config = ("config = Config(provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=1),\n"
              "                max_workers_per_node=1)\n")
    with endpoint_with(fxc, "offline", config, tmp_path / "unused") as ep:
        assert daemon.stop(ep.name) is True  # its status key goes with it
        tid = fxc.run(2, endpoint_id=ep.eid, function_id=fxc.register_function(square))
        doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
        assert doc["status"] == "waiting-for-ep", doc
        assert [p["kind"] for p in doc["details"]["problems"]] == ["endpoint_offline"], doc


ISOLATED = '''

class Isolated(Elsewhere):
    """A remote provider whose compute node cannot reach this host: its
    blocks run in a network namespace with no route out."""

    def submit(self, command, tasks_per_node, job_name="block"):
        import shlex

        with open({attempts!r}, "a") as f:
            f.write(repr(__import__("time").time()) + "\\n")
        wrapped = f"exec ip netns exec {ns} bash -c {{shlex.quote(command)}}"
        return super().submit(wrapped, tasks_per_node, job_name)


config = Config(provider=Isolated(init_blocks=1, min_blocks=1, max_blocks=1),
                block_register_timeout=3, max_workers_per_node=1)
'''


@pytest.fixture
def netns():
    """A network namespace with no route out (a compute node that cannot
    reach the login node)."""
    import shutil
    import subprocess

    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    name = f"fxblk{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
    yield name
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@pytest.mark.slow  # an endpoint (or ingester) waited through timeouts: the slow CI step
def test_a_block_whose_manager_cannot_reach_the_interchange(fxc, http, tmp_path, netns,
                                                             fast_backoff):
    """The trap of the issue: the manager runs where the interchange address
    does not reach.  It never registers; after block_register_timeout the
    block is reported (status and the waiting task), cancelled (its manager
    ends) and the next block waits for the back-off, not a few seconds."""
    from endpoint.addresses import detect_routable, is_loopback

    if is_loopback(detect_routable()):
        pytest.skip("this host has no routable address")
    attempts = tmp_path / "attempts"
    with endpoint_with(fxc, "isolated", ISOLATED.format(attempts=str(attempts), ns=netns),
                       attempts) as ep:
        tid = fxc.run(5, endpoint_id=ep.eid, function_id=fxc.register_function(square))
        found = wait_until(lambda: problems(fxc, ep.eid, "never_registered"))
        assert found and "ran 3s without its manager registering" in found[0]["message"]
        doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
        assert doc["status"].startswith("waiting-for"), doc
        assert any(p["kind"] == "never_registered" for p in doc["details"]["problems"]), doc
        times = wait_until(lambda: (t := attempt_times(attempts)) and len(t) >= 3 and t)
        assert times and len(times) >= 3, times
        gaps = [b - a for a, b in zip(times, times[1:])]
        # each block runs 3 s unregistered, then the back-off: 1 s, then 2 s
        assert gaps[0] >= 3 + 1 - 0.3 and gaps[1] >= 3 + 2 - 0.3, gaps
        assert "cancelling" in ep.dir.log_file.read_text()
    # cancelled and stopped blocks leave nothing running in the "compute node"
    import subprocess

    def netns_pids() -> str:
        return subprocess.run(["ip", "netns", "pids", netns], capture_output=True,
                              text=True).stdout.strip()

    assert wait_until(lambda: netns_pids() == "", 15) is True, netns_pids()
