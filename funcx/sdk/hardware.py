"""Worker hardware (issue 18, item 7; Globus Compute's
``get_worker_hardware_details``): what CPUs, memory and accelerators each
worker of an endpoint runs on.

Two ways to ask:

* ``fxc.get_worker_hardware_details(endpoint_id)`` answers at once from what
  the endpoint's managers reported when they registered (node, CPU model,
  cores, memory; each worker's pinned CPUs and accelerator; the GPUs
  ``nvidia-smi`` lists): a :class:`HardwareReport`.  Globus Compute's method
  of that name runs a task and returns its id instead; here no task is needed.
* :func:`run_hardware_report` and :func:`worker_hardware_details` are plain
  functions to submit as tasks (like Globus Compute's ``run_hardware_report``):
  they answer from inside a worker, with its own environment
  (``CUDA_VISIBLE_DEVICES``...) and CPU affinity.

The probes (:func:`node_hardware`) are also what a manager runs to build its
report; each is bounded (``nvidia-smi`` gets a few seconds and its output is
cut) and none raises when a tool or file is absent.
"""
from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Sequence
from typing import Any

from funcx.protocol.hardware import (
    MAX_GPUS,
    MAX_PROBLEMS,
    MAX_WORKERS,
    GpuInfo,
    HardwareProblem,
    NodeHardware,
    WorkerHardware,
    cut,
    format_cpu_list,
)

#: seconds nvidia-smi may take, and the most of its output read
NVIDIA_SMI_TIMEOUT_S = 5.0
NVIDIA_SMI_MAX_BYTES = 64 * 1024
#: the variables that name a process's accelerators (CUDA, ROCm, oneAPI)
ACCELERATOR_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK",
                    "HIP_VISIBLE_DEVICES")


# ------------------------------------------------------------------ probes
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; else what ``platform`` says)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f.read(1 << 20).splitlines():
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware", "cpu") and value.strip():
                    return cut(value)
    except OSError:
        pass
    return cut(platform.processor() or platform.machine())


def memory() -> tuple[int, int]:
    """(total, available) memory of this node in bytes (0, 0 when unknown)."""
    found: dict[str, int] = {}
    try:
        with open("/proc/meminfo", encoding="ascii", errors="replace") as f:
            for line in f.read(1 << 16).splitlines():
                key, _, value = line.partition(":")
                parts = value.split()
                if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
                    found[key] = int(parts[0]) * 1024
    except OSError:
        pass
    if "MemTotal" not in found:
        try:
            import psutil

            vm = psutil.virtual_memory()
            return int(vm.total), int(vm.available)
        except ImportError:
            return 0, 0
    return found["MemTotal"], found.get("MemAvailable", 0)


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def nvidia_gpus(timeout: float = NVIDIA_SMI_TIMEOUT_S) -> list[GpuInfo]:
    """The GPUs ``nvidia-smi`` lists ([] when it is absent, slow or fails)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        done = subprocess.run(
            [exe, "--query-gpu=index,name,uuid,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if done.returncode != 0:
        return []
    return parse_nvidia_smi(done.stdout[:NVIDIA_SMI_MAX_BYTES].decode(errors="replace"))


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """``index, name, uuid, memory.total (MiB)`` lines -> GpuInfo (bad lines skipped)."""
    gpus: list[GpuInfo] = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        mib = int(parts[3]) if parts[3].isdigit() else 0
        gpus.append(GpuInfo(index=min(int(parts[0]), MAX_GPUS * 16), name=cut(parts[1]),
                            uuid=cut(parts[2], 96), memory_total=mib * 2**20))
        if len(gpus) == MAX_GPUS:
            break
    return gpus


def node_hardware(workers: Sequence[WorkerHardware] = (), accelerators: Sequence[str] = (),
                  problems: Sequence[tuple[str, str]] = (), gpus: bool = True) -> NodeHardware:
    """This node, with ``workers``' shares; ``problems`` are (code, message)."""
    total, available = memory()
    return NodeHardware(
        hostname=cut(socket.gethostname()), cpu_model=cpu_model(),
        logical_cores=os.cpu_count() or 0, cpus=format_cpu_list(allowed_cpus()),
        memory_total=total, memory_available=available, platform=cut(platform.platform()),
        accelerators=list(accelerators)[:1024],
        gpus=nvidia_gpus() if gpus else [], workers=list(workers)[:MAX_WORKERS],
        problems=[HardwareProblem(code, cut(msg, 512)) for code, msg in problems][:MAX_PROBLEMS])


# ------------------------------------------------------------- as a task
def worker_hardware_details() -> dict[str, Any]:
    """Submit this as a task: the hardware of the worker that runs it (its
    host, CPU model, cores, its CPU affinity, memory, its accelerator
    variables, the GPUs nvidia-smi lists)."""
    from funcx.protocol.hardware import format_cpu_list
    from funcx.sdk.hardware import ACCELERATOR_VARS, allowed_cpus, node_hardware

    hw = node_hardware()
    return {"hostname": hw.hostname, "cpu_model": hw.cpu_model,
            "logical_cores": hw.logical_cores, "cpu_affinity": format_cpu_list(allowed_cpus()),
            "memory_total": hw.memory_total, "memory_available": hw.memory_available,
            "platform": hw.platform, "pid": os.getpid(),
            "accelerators": {v: os.environ[v] for v in ACCELERATOR_VARS if v in os.environ},
            "gpus": [{"index": g.index, "name": g.name, "uuid": g.uuid,
                      "memory_total": g.memory_total} for g in hw.gpus]}


def run_hardware_report(env: str | None = None) -> str:
    """Submit this as a task (Globus Compute's ``run_hardware_report``): the
    worker's hardware as text; ``env`` labels each line's section."""
    from funcx.sdk.hardware import format_bytes, worker_hardware_details

    d = worker_hardware_details()
    head = f"== {env} == " if env else ""
    lines = [f"{head}== worker hardware ==",
             f"        host: {d['hostname']} (pid {d['pid']})",
             f"   CPU model: {d['cpu_model']}",
             f"logical cores: {d['logical_cores']}",
             f"CPU affinity: {d['cpu_affinity']}",
             f"      memory: {format_bytes(d['memory_available'])} available of "
             f"{format_bytes(d['memory_total'])}",
             f"    platform: {d['platform']}"]
    lines += [f"{k:>12}: {v}" for k, v in d["accelerators"].items()] or \
        ["accelerators: (no CUDA/ROCm/oneAPI device variable set)"]
    lines += [f"      GPU {g['index']}: {g['name']} {g['uuid']} "
              f"({format_bytes(g['memory_total'])})" for g in d["gpus"]]
    return "\n".join(lines)


# ------------------------------------------------------------- the report
def format_bytes(n: object) -> str:
    """``17179869184`` -> ``"16.0 GiB"`` ("?" for what is not a number)."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n <= 0:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return "?"


def every_worker(manager: dict, hw: dict) -> list[dict[str, Any]]:
    """All the workers of a manager: those its report lists (pinned, or with
    an accelerator) and, for the others, ``{"worker": i}`` (no share of their
    own), up to the manager's worker count."""
    listed = {w.get("worker"): w for w in hw.get("workers") or [] if isinstance(w, dict)}
    count = manager.get("workers")
    n = min(count, MAX_WORKERS) if isinstance(count, int) and not isinstance(count, bool) else 0
    everyone = [listed.get(i, {"worker": i}) for i in range(n)]
    return everyone + [w for i, w in sorted(listed.items(), key=lambda kv: str(kv[0]))
                       if not (isinstance(i, int) and 0 <= i < n)]


class HardwareReport(dict):
    """An endpoint's hardware, per manager (node) with its workers, from its
    status: ``{"endpoint_id", "status", "managers": [{"manager_id",
    "block_id", "hostname", "workers", "hardware": {...} or None,
    "hardware_refused": {"code", "message"} (when the service refused what
    the manager sent)}]}``.  ``str()`` gives a table; :meth:`workers` one row
    per worker."""

    @classmethod
    def from_status(cls, endpoint_id: str, status: dict) -> HardwareReport:
        details = status.get("details") or {}
        managers = []
        for m in details.get("manager_details") or []:
            if not isinstance(m, dict):
                continue
            row = {k: m.get(k) for k in ("manager_id", "block_id", "hostname", "workers")}
            row["hardware"] = m.get("hardware") if isinstance(m.get("hardware"), dict) else None
            if m.get("hardware_refused"):
                row["hardware_refused"] = m["hardware_refused"]
            managers.append(row)
        return cls(endpoint_id=endpoint_id, status=status.get("status", "?"),
                   managers=managers)

    def workers(self) -> list[dict[str, Any]]:
        """One row per worker: its manager and node, CPUs and accelerator."""
        rows = []
        for m in self["managers"]:
            hw = m.get("hardware") or {}
            node = {"manager_id": m.get("manager_id"),
                    "hostname": hw.get("hostname") or m.get("hostname"),
                    "cpu_model": hw.get("cpu_model", ""),
                    "logical_cores": hw.get("logical_cores", 0),
                    "memory_total": hw.get("memory_total", 0),
                    "memory_available": hw.get("memory_available", 0)}
            for w in every_worker(m, hw):
                rows.append({**node, "worker": w.get("worker"),
                             "cpus": w.get("cpus") or hw.get("cpus", ""),
                             "pinned": bool(w.get("cpus")),
                             "accelerator": w.get("accelerator", "")})
        return rows

    def lines(self) -> list[str]:
        """The report as text lines (what ``funcx endpoint show`` prints)."""
        out = [f"endpoint {self['endpoint_id']} ({self['status']}): "
               f"{len(self['managers'])} manager(s)"]
        for m in self["managers"]:
            hw = m.get("hardware")
            out.append(f"manager {m.get('manager_id')} (block {m.get('block_id')}) on "
                       f"{(hw or {}).get('hostname') or m.get('hostname')}")
            if m.get("hardware_refused"):
                r = m["hardware_refused"]
                out.append(f"  hardware report refused [{r.get('code')}]: {r.get('message')}")
            if not hw:
                continue
            out.append(f"  CPU: {hw.get('cpu_model') or '?'}, {hw.get('logical_cores', '?')} "
                       f"logical cores, this manager may use {hw.get('cpus') or '?'}")
            out.append(f"  memory: {format_bytes(hw.get('memory_available'))} available of "
                       f"{format_bytes(hw.get('memory_total'))}")
            if hw.get("accelerators"):
                out.append(f"  accelerators: {', '.join(hw['accelerators'])}")
            for g in hw.get("gpus") or []:
                out.append(f"  GPU {g.get('index')}: {g.get('name', '')} "
                           f"({format_bytes(g.get('memory_total'))}) {g.get('uuid', '')}")
            for w in every_worker(m, hw):
                cpus = w.get("cpus")
                out.append(f"  worker {w.get('worker')}: CPUs "
                           f"{cpus + ' (pinned)' if cpus else (hw.get('cpus') or '?')}"
                           + (f", accelerator {w['accelerator']}" if w.get("accelerator") else ""))
            for p in hw.get("problems") or []:
                out.append(f"  problem [{p.get('code')}]: {p.get('message')}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())
