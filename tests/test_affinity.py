"""Accelerators and CPU pinning (issue 18, item 3): the pure assignment
(endpoint/affinity.py) against CPU counts, the Config options, and real
worker processes started by a WorkerPool: each sees exactly its device in
CUDA_VISIBLE_DEVICES (fake device ids: the variable is what is tested) and
runs on exactly its CPUs (/proc/PID/status Cpus_allowed_list), and a worker
replaced after a cancel gets the same device and CPUs back."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from faults.faultlib import wait_until

from endpoint.affinity import (
    Placement,
    check_cpu_affinity,
    parse_accelerators,
    parse_cpu_list,
    plan,
    workers_with_accelerators,
)
from endpoint.config import Config
from endpoint.worker_pool import WorkerPool
from funcx.protocol.hardware import format_cpu_list
from funcx.protocol.messages import Task


# ------------------------------------------------------------ accelerators
@pytest.mark.parametrize("value, ids", [
    (None, []), (0, []), (4, ["0", "1", "2", "3"]), ([0, 1], ["0", "1"]),
    ("0,1", ["0", "1"]), (" 2 , 3 ", ["2", "3"]), ("", []),
    (["GPU-3f2c1a", "MIG-1/2/3"], ["GPU-3f2c1a", "MIG-1/2/3"]), (("a",), ["a"]),
])
def test_available_accelerators_forms(value, ids):
    assert parse_accelerators(value) == ids


@pytest.mark.parametrize("value, words", [
    (True, "bool"), (-1, "0..1024"), (2000, "0..1024"), ([0, 0], "listed twice"),
    ("0,,1", "not a device id"), (["a b"], "not a device id"), ([1.5], "not a device id"),
    ({"0": 1}, "not dict"), (["x" * 65], "not a device id"),
])
def test_bad_available_accelerators_are_refused_with_the_reason(value, words):
    with pytest.raises(ValueError, match="available_accelerators") as e:
        parse_accelerators(value)
    assert words in str(e.value)


def test_one_worker_per_accelerator_at_most():
    assert workers_with_accelerators(8, ["0", "1", "2", "3"]) == 4
    assert workers_with_accelerators(2, ["0", "1", "2", "3"]) == 2
    assert workers_with_accelerators(8, []) == 8


def test_each_worker_gets_its_own_accelerator_in_every_variable():
    p = plan(3, ["0", "1", "GPU-x"], [0, 1])
    assert [x.accelerator for x in p.placements] == ["0", "1", "GPU-x"]
    env = p.placements[2].env()
    for var in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK"):
        assert env[var] == "GPU-x"
    assert env["ZE_ENABLE_PCI_ID_DEVICE_ORDER"] == "1"
    assert "FUNCX_WORKER_CPUS" not in env  # cpu_affinity "none": not pinned
    assert Placement(0).env() == {}


# --------------------------------------------------------------- CPU pinning
@pytest.mark.parametrize("affinity, workers, cpus, expect", [
    ("block", 2, range(8), [[0, 1, 2, 3], [4, 5, 6, 7]]),
    ("block", 3, range(8), [[0, 1], [2, 3], [4, 5]]),  # k = 8 // 3; the rest unused
    ("block-reverse", 2, range(8), [[4, 5, 6, 7], [0, 1, 2, 3]]),
    ("alternating", 2, range(8), [[0, 2, 4, 6], [1, 3, 5, 7]]),
    ("alternating", 3, range(8), [[0, 3, 6], [1, 4, 7], [2, 5]]),
    ("block", 2, [2, 3, 8, 9], [[2, 3], [8, 9]]),  # the manager's own CPUs (a cgroup)
    ("list:0,1:2-3", 2, range(4), [[0, 1], [2, 3]]),
    ("LIST:3:0", 2, range(4), [[3], [0]]),
    ("block", 2, range(2), [[0], [1]]),
])
def test_cpu_affinity_strategies(affinity, workers, cpus, expect):
    p = plan(workers, [], list(cpus), affinity)
    assert p.problem is None
    assert [list(x.cpus or ()) for x in p.placements] == expect
    env = p.placements[0].env()
    assert env["FUNCX_WORKER_CPUS"] == format_cpu_list(expect[0])
    assert env["OMP_NUM_THREADS"] == str(len(expect[0]))
    assert env["GOMP_CPU_AFFINITY"] == ",".join(map(str, expect[0]))
    assert env["KMP_AFFINITY"] == f"explicit,proclist=[{','.join(map(str, expect[0]))}]"


@pytest.mark.parametrize("affinity, workers, cpus, words", [
    ("block", 4, range(2), "at least one CPU per worker"),
    ("alternating", 3, range(2), "at least one CPU per worker"),
    ("list:0:1", 3, range(4), "2 CPU set(s) for 3 worker(s)"),
    ("list:0:7", 2, range(4), "CPU(s) 7 that this manager may not use"),
])
def test_a_node_that_cannot_pin_runs_unpinned_and_says_why(affinity, workers, cpus, words):
    p = plan(workers, ["0"] * 0, list(cpus), affinity)
    assert p.problem is not None and words in p.problem
    assert "not pinned" in p.problem
    assert all(x.cpus is None for x in p.placements)
    assert len(p.placements) == workers  # the workers still run


def test_cpu_affinity_none_pins_nothing():
    p = plan(2, ["0", "1"], [0, 1, 2, 3], "none")
    assert [x.cpus for x in p.placements] == [None, None]


@pytest.mark.parametrize("value", ["block", "Block ", "none", "alternating", "block-reverse",
                                   "list:0", "list:0,1:2-3"])
def test_good_cpu_affinity_values(value):
    assert check_cpu_affinity(value) == value.strip().lower()


@pytest.mark.parametrize("value, words", [
    ("spread", "must be one of"), (3, "must be a string"), ("list:0:a", "worker 1's CPUs"),
    ("list:3-1", "not a CPU range"), ("list:0,0", "names a CPU twice"),
    ("list:", "not a CPU number"), ("list:99999", "not a CPU range"),
])
def test_bad_cpu_affinity_is_refused_with_the_reason(value, words):
    with pytest.raises(ValueError, match="cpu_affinity|CPU") as e:
        check_cpu_affinity(value)
    assert words in str(e.value)


def test_cpu_lists_round_trip():
    assert parse_cpu_list("0,2-4,7") == [0, 2, 3, 4, 7]
    assert format_cpu_list([7, 0, 2, 3, 4]) == "0,2-4,7"
    assert format_cpu_list([]) == ""


# -------------------------------------------------------------------- Config
def test_config_caps_workers_at_one_per_accelerator_as_parsl_does():
    assert Config(available_accelerators=4).workers_per_node() == 4  # default: one each
    assert Config(available_accelerators="0,1", max_workers_per_node=8).workers_per_node() == 2
    assert Config(available_accelerators=[5, 6, 7], max_workers_per_node=2
                  ).workers_per_node() == 2
    assert Config(available_accelerators=[5, 6]).accelerators == ["5", "6"]


def test_config_refuses_bad_placement_options():
    with pytest.raises(ValueError, match="available_accelerators"):
        Config(available_accelerators="0,0")
    with pytest.raises(ValueError, match="cpu_affinity must be one of"):
        Config(cpu_affinity="spread")
    with pytest.raises(ValueError, match="2 CPU set"):
        Config(max_workers_per_node=3, cpu_affinity="list:0:1")
    assert Config(cpu_affinity="BLOCK").cpu_affinity == "block"


def test_the_block_launch_carries_accelerators_and_affinity():
    from endpoint.launch import ManagerLaunch

    launch = ManagerLaunch(addr="tcp://127.0.0.1:1", workers=2, curve_keys="/k",
                           accelerators="0,GPU-1", cpu_affinity="list:0:1")
    back = ManagerLaunch.from_argv(launch.to_argv())
    assert (back.accelerators, back.cpu_affinity) == ("0,GPU-1", "list:0:1")


# ------------------------------------------------------ real worker processes
def proc_status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} for {pid}")


def proc_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


class Manager:
    """The manager's end of the workers' socket: a worker says READY once it
    has pinned itself and connected (so its CPU set is final)."""

    def __init__(self, addr: str):
        import zmq

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVTIMEO, 15_000)
        self.sock.bind(addr)

    def ready(self, identities: set[bytes]) -> None:
        """Wait for READY from each of ``identities`` (others' are skipped)."""
        from funcx.protocol.messages import Kind, unpack

        left = set(identities)
        while left:
            frames = self.sock.recv_multipart()  # zmq.Again after 15 s: a failure
            if unpack(frames[1:]).kind == Kind.READY:
                left.discard(frames[0])

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()


needs_two_cpus = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs this process may use")


@needs_two_cpus
def test_real_workers_see_exactly_their_device_and_cpus_and_keep_them_when_replaced(
        tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # the node's: never leaked as is
    monkeypatch.setenv("FUNCX_WORKER_CPUS", "0-1")  # a stale one: never inherited
    cpus = sorted(os.sched_getaffinity(0))[:2]
    p = plan(2, ["GPU-a", "GPU-b"], cpus, "block")
    mgr = Manager(f"ipc://{tmp_path}/workers")
    pool = WorkerPool(f"ipc://{tmp_path}/workers", str(tmp_path), str(tmp_path), 2,
                      placements=p.placements, kill_grace=0.2)
    try:
        for slot in pool.slots:
            pool.spawn(slot)
        mgr.ready({s.identity for s in pool.slots})
        for slot, device, cpu in zip(pool.slots, ["GPU-a", "GPU-b"], cpus):
            assert slot.proc is not None
            pid = slot.proc.pid
            env = proc_env(pid)
            assert env["CUDA_VISIBLE_DEVICES"] == device
            assert env["ROCR_VISIBLE_DEVICES"] == device and env["ZE_AFFINITY_MASK"] == device
            assert env["FUNCX_WORKER_CPUS"] == str(cpu)
            assert proc_status(pid, "Cpus_allowed_list") == str(cpu)
        # a cancel kills worker 1 and starts a replacement in its slot at once:
        # the same device and CPU
        slot = pool.slots[1]
        old = slot.proc.pid
        slot.task = Task(task_id="t1", function_id="f", payload="")
        pool.cancel(slot, 0.0)
        assert slot.proc is not None and slot.proc.pid != old
        new = slot.proc.pid
        mgr.ready({slot.identity})
        assert proc_env(new)["CUDA_VISIBLE_DEVICES"] == "GPU-b"
        assert proc_status(new, "Cpus_allowed_list") == str(cpus[1])
        assert wait_until(lambda: not os.path.exists(f"/proc/{old}/status")
                          or proc_status(old, "State").startswith("Z"), 10)
    finally:
        pool.shutdown()
        mgr.close()


def test_real_unpinned_workers_keep_the_managers_cpus_and_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("FUNCX_WORKER_CPUS", "0")  # stale: an unpinned worker must not use it
    mine = format_cpu_list(sorted(os.sched_getaffinity(0)))
    mgr = Manager(f"ipc://{tmp_path}/workers")
    pool = WorkerPool(f"ipc://{tmp_path}/workers", str(tmp_path), str(tmp_path), 1,
                      placements=plan(1, [], [0], "none").placements)
    try:
        pool.spawn(pool.slots[0])
        mgr.ready({pool.slots[0].identity})
        proc = pool.slots[0].proc
        assert proc is not None
        env = proc_env(proc.pid)
        assert env["CUDA_VISIBLE_DEVICES"] == "3" and "FUNCX_WORKER_CPUS" not in env
        assert proc_status(proc.pid, "Cpus_allowed_list") == mine
    finally:
        pool.shutdown()
        mgr.close()


@needs_two_cpus
def test_a_worker_that_dies_is_replaced_on_its_device_and_cpus(tmp_path):
    import signal

    cpus = sorted(os.sched_getaffinity(0))[:2]
    mgr = Manager(f"ipc://{tmp_path}/workers")
    pool = WorkerPool(f"ipc://{tmp_path}/workers", str(tmp_path), str(tmp_path), 2,
                      placements=plan(2, ["0", "1"], cpus, "alternating").placements)
    try:
        for slot in pool.slots:
            pool.spawn(slot)
        mgr.ready({s.identity for s in pool.slots})
        slot = pool.slots[0]
        old = slot.proc
        assert old is not None
        os.kill(old.pid, signal.SIGKILL)  # a segfault, an OOM kill...
        old.wait(10)
        pool.reap(stopping=False)
        assert slot.proc is not None and slot.proc is not old
        mgr.ready({slot.identity})
        assert proc_env(slot.proc.pid)["CUDA_VISIBLE_DEVICES"] == "0"
        assert proc_status(slot.proc.pid, "Cpus_allowed_list") == str(cpus[0])
    finally:
        pool.shutdown()
        mgr.close()


# ------------------------------------------------------- the manager's plan
def launch(**kw):
    from endpoint.launch import ManagerLaunch

    return ManagerLaunch(addr="tcp://127.0.0.1:1", curve_keys="/k", **kw)


def test_the_manager_runs_one_worker_per_accelerator_and_reports_them():
    from endpoint.hardware_report import placement_plan, report

    p = placement_plan(launch(workers=8, accelerators="a,b", cpu_affinity="none"))
    assert [(x.index, x.accelerator, x.cpus) for x in p.placements] == \
        [(0, "a", None), (1, "b", None)]
    hw = report(p, "a,b", gpus=False)
    assert hw is not None and hw.accelerators == ["a", "b"] and not hw.problems
    assert [(w.worker, w.accelerator, w.cpus) for w in hw.workers] == [(0, "a", ""), (1, "b", "")]


def test_a_manager_that_cannot_pin_reports_the_problem_with_its_code():
    from endpoint.hardware_report import placement_plan, report
    from funcx.protocol.error_codes import CPU_AFFINITY_UNSATISFIABLE

    too_many = len(os.sched_getaffinity(0)) + 1
    p = placement_plan(launch(workers=too_many, cpu_affinity="block"))
    assert len(p.placements) == too_many and all(x.cpus is None for x in p.placements)
    hw = report(p, "", gpus=False)
    assert hw is not None and hw.problems[0].code == CPU_AFFINITY_UNSATISFIABLE
    assert "at least one CPU per worker" in hw.problems[0].message


# ----------------------------------------------- a manager started by hand
def test_manager_command_passes_accelerators_and_affinity():
    from endpoint.cli import _manager_argv

    argv = _manager_argv("tcp://h:1", "/k", 2, 0, 2.0, 10.0, ["0", "GPU-1"], "block")
    assert argv[-4:] == ["--accelerators", "0,GPU-1", "--cpu-affinity", "block"]
    assert "--accelerators" not in _manager_argv("tcp://h:1", "/k", 2, 0, 2.0, 10.0)


@pytest.mark.parametrize("flag, value, words", [
    ("--cpu-affinity", "spread", "cpu_affinity must be one of"),
    ("--accelerators", "0,0", "listed twice"),
])
def test_a_hand_started_manager_refuses_bad_placement_options(flag, value, words):
    from typer.testing import CliRunner

    from endpoint.cli import app

    out = CliRunner().invoke(app, ["manager", "--addr", "tcp://127.0.0.1:1", "--keys",
                                   "/nonexistent", flag, value])
    assert out.exit_code == 2
    assert words in out.output
