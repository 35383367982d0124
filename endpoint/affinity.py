"""Which accelerator and which CPUs each worker of a manager gets (issue 18,
item 3): pure decisions, no processes.

The interface is Parsl's HighThroughputExecutor's (and Globus Compute's):

* ``available_accelerators``: an int N (devices ``"0"`` .. ``"N-1"``), a list
  of device ids (``[0, 1]``, ``["GPU-3f2c...", "MIG-..."]``) or a comma
  separated string (``"0,1"``).  A manager runs at most one worker per
  accelerator; worker ``i`` gets device ``i`` in ``CUDA_VISIBLE_DEVICES``,
  ``ROCR_VISIBLE_DEVICES`` and ``ZE_AFFINITY_MASK`` (with
  ``ZE_ENABLE_PCI_ID_DEVICE_ORDER=1``), always the same one for its slot, so
  a replaced worker (after a cancel, a crash, a walltime) gets its device back.
* ``cpu_affinity``: ``"none"`` (no pinning), ``"block"`` (worker ``i`` gets the
  CPUs ``[i*k, (i+1)*k)`` of the manager's allowed CPUs, ``k`` = CPUs // workers),
  ``"block-reverse"`` (the same blocks, the last to worker 0), ``"alternating"``
  (worker ``i`` gets every ``n``-th CPU from the ``i``-th), or ``"list:A:B:..."``
  with one CPU list per worker, each ``0,1`` or ranges ``0-3`` (absolute CPU
  ids).  A pinned worker also gets ``OMP_NUM_THREADS``, ``GOMP_CPU_AFFINITY``
  and ``KMP_AFFINITY`` naming its CPUs.

Unlike Parsl (which asserts in the worker), a node that cannot satisfy the
pinning (fewer CPUs than workers, a listed CPU the manager may not use) runs
its workers unpinned and says why (:class:`Plan.problem`, shown in the
endpoint's hardware report with the code ``CPU_AFFINITY_UNSATISFIABLE``).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from funcx.protocol.hardware import format_cpu_list

#: the cpu_affinity strategies besides "list:..."
STRATEGIES = ("none", "block", "alternating", "block-reverse")
#: an accelerator id: a device index, a GPU/MIG UUID, a PCI address...
ACCELERATOR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._/-]{0,63}$")
#: the most accelerators (and workers pinned to them) one manager takes
MAX_ACCELERATORS = 1024
#: the highest CPU id accepted in a cpu_affinity list (Linux's CONFIG_NR_CPUS bound)
MAX_CPU = 8191
#: the environment variables that name a worker's accelerator
ACCELERATOR_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
#: the environment variable that tells a worker which CPUs to pin itself to
CPUS_VAR = "FUNCX_WORKER_CPUS"


def parse_accelerators(value: object) -> list[str]:
    """``available_accelerators`` as a list of device ids (ValueError naming
    what is wrong).  None, 0, "" and [] mean none."""
    if value is None:
        return []
    if isinstance(value, bool):
        raise ValueError("available_accelerators must be a count, a list of device ids "
                         "or a string like '0,1', not a bool")
    if isinstance(value, int):
        if not 0 <= value <= MAX_ACCELERATORS:
            raise ValueError(f"available_accelerators must be 0..{MAX_ACCELERATORS}, "
                             f"not {value}")
        return [str(i) for i in range(value)]
    if isinstance(value, str):
        items: list[object] = [s.strip() for s in value.split(",")] if value.strip() else []
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"available_accelerators must be a count, a list of device ids or "
                         f"a string like '0,1', not {type(value).__name__}")
    ids: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError(f"available_accelerators: {item!r} is not a device id")
        text = str(item).strip()
        if not ACCELERATOR_ID.match(text):
            raise ValueError(f"available_accelerators: {text[:80]!r} is not a device id "
                             f"(an index, or letters, digits and :._/- up to 64 characters)")
        if text in ids:
            raise ValueError(f"available_accelerators: {text!r} is listed twice")
        ids.append(text)
    if len(ids) > MAX_ACCELERATORS:
        raise ValueError(f"available_accelerators: at most {MAX_ACCELERATORS} devices")
    return ids


def parse_cpu_list(text: str) -> list[int]:
    """``"0,2-4"`` -> ``[0, 2, 3, 4]`` (ValueError on anything else)."""
    cpus: list[int] = []
    for part in text.split(","):
        bounds = part.strip().split("-")
        if len(bounds) > 2 or not all(b.isdigit() for b in bounds):
            raise ValueError(f"{part.strip()!r} is not a CPU number or range like 0-3")
        lo, hi = int(bounds[0]), int(bounds[-1])
        if hi < lo or hi > MAX_CPU:
            raise ValueError(f"{part.strip()!r} is not a CPU range within 0-{MAX_CPU}")
        cpus.extend(range(lo, hi + 1))
    if len(set(cpus)) != len(cpus):
        raise ValueError(f"{text!r} names a CPU twice")
    return cpus


def check_cpu_affinity(value: object) -> str:
    """``cpu_affinity`` normalised (lower case), or ValueError naming the forms."""
    if not isinstance(value, str):
        raise ValueError(f"cpu_affinity must be a string ({', '.join(STRATEGIES)} or "
                         f"'list:0,1:2,3'), not {type(value).__name__}")
    text = value.strip().lower()
    if text in STRATEGIES:
        return text
    if text.startswith("list:"):
        ranks = text[len("list:"):].split(":")
        for i, rank in enumerate(ranks):
            try:
                parse_cpu_list(rank)
            except ValueError as e:
                raise ValueError(f"cpu_affinity {value!r}: worker {i}'s CPUs: {e}") from None
        return text
    raise ValueError(f"cpu_affinity must be one of {', '.join(STRATEGIES)} or 'list:' with "
                     f"one CPU list per worker (e.g. 'list:0,1:2,3' or 'list:0-3:4-7'), "
                     f"not {value!r}")


def workers_with_accelerators(workers: int, accelerators: Sequence[str]) -> int:
    """Parsl's rule: with accelerators, at most one worker per accelerator."""
    return min(workers, len(accelerators)) if accelerators else workers


@dataclass(frozen=True)
class Placement:
    """What worker ``index`` runs on: its accelerator (None: all the node's)
    and its CPUs (None: not pinned)."""

    index: int
    accelerator: str | None = None
    cpus: tuple[int, ...] | None = None

    def env(self) -> dict[str, str]:
        """The variables its worker process starts with."""
        out: dict[str, str] = {}
        if self.accelerator is not None:
            for var in ACCELERATOR_VARS:
                out[var] = self.accelerator
            out["ZE_ENABLE_PCI_ID_DEVICE_ORDER"] = "1"
        if self.cpus:
            procs = ",".join(map(str, self.cpus))
            out[CPUS_VAR] = format_cpu_list(self.cpus)
            out["OMP_NUM_THREADS"] = str(len(self.cpus))
            out["GOMP_CPU_AFFINITY"] = procs  # GCC's OpenMP
            out["KMP_AFFINITY"] = f"explicit,proclist=[{procs}]"  # Intel's OpenMP
        return out


@dataclass(frozen=True)
class Plan:
    """Every worker's placement; ``problem``: why the CPU pinning was not applied."""

    placements: list[Placement] = field(default_factory=list)
    problem: str | None = None


def cpus_for(affinity: str, index: int, workers: int, cpus: Sequence[int]) -> list[int]:
    """The CPUs of worker ``index`` of ``workers`` under ``affinity`` (not
    "none"), from the manager's allowed ``cpus``; ValueError when they cannot
    be given."""
    avail = sorted(cpus)
    if affinity.startswith("list:"):
        ranks = affinity[len("list:"):].split(":")
        if len(ranks) != workers:
            raise ValueError(f"cpu_affinity lists {len(ranks)} CPU set(s) for {workers} "
                             f"worker(s); give one per worker")
        mine = parse_cpu_list(ranks[index])
        outside = sorted(set(mine) - set(avail))
        if outside:
            raise ValueError(f"cpu_affinity names CPU(s) {format_cpu_list(outside)} that "
                             f"this manager may not use (it may use {format_cpu_list(avail)})")
        return mine
    k = len(avail) // workers
    if k == 0:
        raise ValueError(f"cpu_affinity={affinity!r} needs at least one CPU per worker: "
                         f"{workers} workers, {len(avail)} CPU(s) allowed "
                         f"({format_cpu_list(avail)})")
    if affinity == "block":
        return avail[k * index:k * (index + 1)]
    if affinity == "block-reverse":
        r = workers - index - 1
        return avail[k * r:k * (r + 1)]
    if affinity == "alternating":
        return avail[index::workers]
    raise ValueError(f"unknown cpu_affinity {affinity!r}")


def plan(workers: int, accelerators: Sequence[str], cpus: Sequence[int],
         affinity: str = "none") -> Plan:
    """Each of ``workers`` workers' accelerator and CPUs.  ``workers`` is
    already capped (:func:`workers_with_accelerators`); ``cpus`` are the CPUs
    the manager itself may use (``os.sched_getaffinity(0)``)."""
    affinity = check_cpu_affinity(affinity)
    problem = None
    cpu_sets: list[tuple[int, ...] | None] = [None] * workers
    if affinity != "none" and workers > 0:
        try:
            cpu_sets = [tuple(cpus_for(affinity, i, workers, cpus)) for i in range(workers)]
        except ValueError as e:
            problem, cpu_sets = f"{e}; the workers are not pinned", [None] * workers
    placements = [Placement(i, accelerators[i] if i < len(accelerators) else None,
                            cpu_sets[i]) for i in range(workers)]
    return Plan(placements, problem)
