"""What a manager tells the interchange about its node (issue 18, items 3
and 7): where each worker runs (:mod:`endpoint.affinity`) and the node's
hardware (:mod:`funcx.sdk.hardware` probes), as a
:class:`funcx.protocol.hardware.NodeHardware` that passes its own schema."""
from __future__ import annotations

import logging

from endpoint.affinity import Plan, parse_accelerators, plan, workers_with_accelerators
from endpoint.launch import ManagerLaunch
from funcx.protocol.error_codes import CPU_AFFINITY_UNSATISFIABLE
from funcx.protocol.hardware import (
    NodeHardware,
    WorkerHardware,
    as_dict,
    checked,
    format_cpu_list,
)
from funcx.sdk.hardware import allowed_cpus, memory, node_hardware

log = logging.getLogger("funcx.manager")


def placement_plan(launch: ManagerLaunch) -> Plan:
    """Each worker's accelerator and CPUs on this node: as many workers as
    the launch asks, at most one per accelerator (Parsl's rule)."""
    accelerators = parse_accelerators(launch.accelerators)
    workers = workers_with_accelerators(launch.workers, accelerators)
    if workers < launch.workers:
        log.info("%d accelerator(s): %d worker(s), not %d", len(accelerators), workers,
                 launch.workers)
    p = plan(workers, accelerators, allowed_cpus(), launch.cpu_affinity)
    if p.problem:
        log.error("cpu_affinity=%r: %s", launch.cpu_affinity, p.problem)
    return p


def report(p: Plan, accelerators: str, gpus: bool = True) -> NodeHardware | None:
    """This node's hardware with each worker's share, or None when it does
    not pass its schema (never expected: every field is cut to its bound)."""
    # only the workers with a share of their own: the others use all of the
    # node's CPUs and no accelerator (a 128-worker node unpinned lists none)
    workers = [WorkerHardware(worker=x.index, cpus=format_cpu_list(x.cpus or ()),
                              accelerator=x.accelerator or "") for x in p.placements
               if x.cpus or x.accelerator]
    problems = [(CPU_AFFINITY_UNSATISFIABLE, p.problem)] if p.problem else []
    hw = checked(node_hardware(workers, parse_accelerators(accelerators), problems, gpus=gpus))
    if hw is None:
        log.warning("this node's hardware report does not pass its schema; not sent")
    return hw


def available_memory() -> int:
    """The node's available memory now (bytes; for heartbeats)."""
    return memory()[1]


class HardwareBook:
    """The interchange's record of each manager's hardware report (from its
    Register, decoded strictly there; its available memory from each
    heartbeat), added to the endpoint's status by :meth:`annotate`.  The
    interchange loop writes; the agent's heartbeat thread reads (each write
    rebinds a new dict, so a reader never sees one half made)."""

    #: the most managers remembered (the oldest forgotten first)
    MAX_MANAGERS = 10_000

    def __init__(self) -> None:
        self.reports: dict[str, NodeHardware] = {}

    def registered(self, mid: bytes, header: object) -> None:
        hw = getattr(header, "hardware", None)
        key = mid.decode(errors="replace")
        reports = {k: v for k, v in self.reports.items() if k != key}
        if isinstance(hw, NodeHardware):
            reports[key] = hw
        while len(reports) > self.MAX_MANAGERS:
            del reports[next(iter(reports))]
        self.reports = reports

    def beat(self, mid: bytes, header: object) -> None:
        memory_now = getattr(header, "memory_available", None)
        hw = self.reports.get(mid.decode(errors="replace"))
        if hw is not None and isinstance(memory_now, int):
            hw.memory_available = memory_now

    def annotate(self, snapshot: dict) -> dict:
        """``snapshot`` with ``hardware`` in each of its ``manager_details``."""
        reports = self.reports
        for d in snapshot.get("manager_details", []):
            hw = reports.get(d.get("manager_id", ""))
            if hw is not None:
                d["hardware"] = as_dict(hw)
        return snapshot
