"""A manager's hardware report (issue 18, item 7): the node it runs on and
each worker's share of it (CPUs, accelerator), defined once and decoded
through this schema wherever it crosses a boundary (DESIGN decision 8).

A manager sends it in its ``Register`` message (and its available memory in
every heartbeat); the interchange refuses a report outside this schema (the
manager is not registered: :mod:`funcx.protocol.messages` decodes Register
strictly); the agent passes it on in the endpoint's status; the service
decodes it again (:func:`decode_hardware`) and shows a refused one as
``hardware_refused`` with the code ``HARDWARE_REPORT_REFUSED``.  Every string,
list and number is bounded; unknown fields are refused.  The producer cuts
what it collected to these bounds (:func:`cut`), so an honest node's report
always passes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct, field

#: the most workers one report lists (a manager with more lists the first ones)
MAX_WORKERS = 1024
#: the most accelerators and GPUs one report lists
MAX_ACCELERATORS = 1024
MAX_GPUS = 64
MAX_PROBLEMS = 8
#: bounds of the free-text fields
TEXT_LEN = 256
MESSAGE_LEN = 512

Text = Annotated[str, Meta(max_length=TEXT_LEN)]
#: a Linux CPU list (``0-3,8``), as /proc/self/status's Cpus_allowed_list
CpuList = Annotated[str, Meta(max_length=4096, pattern=r"^[0-9,-]*$")]
#: an accelerator id (as endpoint.affinity accepts it)
AcceleratorId = Annotated[str, Meta(max_length=64, pattern=r"^[A-Za-z0-9:._/-]*$")]
Bytes = Annotated[int, Meta(ge=0, le=1 << 60)]


class GpuInfo(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One GPU as ``nvidia-smi`` lists it."""

    index: Annotated[int, Meta(ge=0, le=MAX_GPUS * 16)]
    name: Text = ""
    uuid: Annotated[str, Meta(max_length=96)] = ""
    memory_total: Bytes = 0


class WorkerHardware(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """One worker's share: its slot, the CPUs it is pinned to ("" when it is
    not: it may use all of the manager's) and its accelerator ("" for none)."""

    worker: Annotated[int, Meta(ge=0, le=100_000)]
    cpus: CpuList = ""
    accelerator: AcceleratorId = ""


class HardwareProblem(Struct, forbid_unknown_fields=True):
    """Something the node could not do as configured (e.g. pin its workers)."""

    code: Annotated[str, Meta(max_length=64, pattern=r"^[A-Z_]+$")]
    message: Annotated[str, Meta(max_length=MESSAGE_LEN)]


class NodeHardware(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The node a manager runs on, and its workers."""

    hostname: Text = ""
    cpu_model: Text = ""
    logical_cores: Annotated[int, Meta(ge=0, le=1 << 20)] = 0
    #: the CPUs the manager itself may use (its affinity, e.g. a Slurm cgroup's)
    cpus: CpuList = ""
    memory_total: Bytes = 0
    memory_available: Bytes = 0
    platform: Text = ""
    #: the configured accelerators (``available_accelerators``)
    accelerators: Annotated[list[AcceleratorId], Meta(max_length=MAX_ACCELERATORS)] = \
        field(default_factory=list)
    #: the GPUs nvidia-smi lists (none when it is absent or silent)
    gpus: Annotated[list[GpuInfo], Meta(max_length=MAX_GPUS)] = field(default_factory=list)
    #: the workers pinned to CPUs or given an accelerator (a worker not listed
    #: may use all of ``cpus`` and has no accelerator of its own)
    workers: Annotated[list[WorkerHardware], Meta(max_length=MAX_WORKERS)] = \
        field(default_factory=list)
    problems: Annotated[list[HardwareProblem], Meta(max_length=MAX_PROBLEMS)] = \
        field(default_factory=list)


def format_cpu_list(cpus: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the form of /proc's Cpus_allowed_list)."""
    out: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)


def cut(text: object, limit: int = TEXT_LEN) -> str:
    """``text`` as a single-line string of at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


def decode_hardware(obj: Any) -> NodeHardware:
    """``obj`` (decoded JSON) checked against the schema; ValueError naming
    the offending field otherwise."""
    try:
        return msgspec.convert(obj, NodeHardware)
    except (msgspec.ValidationError, RecursionError) as e:
        raise ValueError(f"bad hardware report: {e}") from None


def checked(hw: NodeHardware) -> NodeHardware | None:
    """``hw`` if it passes its own schema (what the receiver checks), else None."""
    try:
        return decode_hardware(msgspec.to_builtins(hw))
    except ValueError:
        return None


def as_dict(hw: NodeHardware) -> dict[str, Any]:
    """The report as JSON-ready builtins (defaults omitted)."""
    out: dict[str, Any] = msgspec.to_builtins(hw)
    return out


def screen_manager_details(details: dict) -> None:
    """In an endpoint's status ``details`` (what its agent wrote): check each
    manager's ``hardware`` against the schema; one that fails is replaced by
    ``hardware_refused: {"code": "HARDWARE_REPORT_REFUSED", "message"}``
    (the rest of the status stands)."""
    from funcx.protocol.error_codes import HARDWARE_REPORT_REFUSED

    managers = details.get("manager_details")
    if managers is None:
        return
    if not isinstance(managers, list):
        details["manager_details"] = []
        return
    for m in managers:
        if not isinstance(m, dict) or "hardware" not in m:
            continue
        try:
            m["hardware"] = as_dict(decode_hardware(m["hardware"]))
        except ValueError as e:
            del m["hardware"]
            m["hardware_refused"] = {"code": HARDWARE_REPORT_REFUSED,
                                     "message": cut(e, MESSAGE_LEN)}
