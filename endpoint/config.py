"""The endpoint ``Config``: what ``$FUNCX_HOME/<name>/config.py`` builds.

Option names and meanings follow the funcX endpoint documentation; blocks of
managers are provisioned by any Parsl provider (DESIGN decision 7).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from funcx.defaults import setting


def _default_provider():
    from parsl.providers import LocalProvider

    return LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1)


WORKER_MODES = ("no_container", "docker", "singularity", "apptainer", "podman")


@dataclass
class Config:
    """Everything an endpoint needs to run functions."""

    provider: Any = field(default_factory=_default_provider)
    max_workers_per_node: int = 0  # 0: one per core (cores_per_worker=1)
    cores_per_worker: float = 1.0
    mem_per_worker: float | None = None  # GB; bounds each worker (and workers per node)
    worker_init: str = ""  # shell lines run before the manager starts
    scaling_enabled: bool = True
    strategy: str = "simple"
    max_idletime: float = 120.0  # seconds a block may stay idle before scale-in
    heartbeat_period: float = field(default_factory=lambda: float(setting("HEARTBEAT_PERIOD_S")))
    heartbeat_threshold: float = field(default_factory=lambda: float(setting("HEARTBEAT_THRESHOLD_S")))
    poll_period: float = 0.1  # seconds between the interchange's housekeeping passes
    worker_mode: str = "no_container"
    container_type: str | None = None
    container_cmd_options: str = ""  # extra options for `docker run` / `apptainer exec`...
    container_runtime: str | None = None  # path of the runtime; default: worker_mode's name
    prefetch_capacity: int = field(default_factory=lambda: int(setting("MANAGER_PREFETCH")))
    working_dir: str | None = None
    allowed_functions: list[str] | None = None
    # where managers reach the interchange: "detect" (127.0.0.1 for a LocalProvider,
    # else the interface that routes off this host), "0.0.0.0" (bind all, advertise
    # the detected one), or an address/host name of this host (endpoint.addresses)
    address: str = field(default_factory=lambda: str(setting("INTERCHANGE_ADDRESS")))
    # seconds a block's job may run without a manager registering before it is
    # reported, cancelled and resubmitted with back-off; None: BLOCK_REGISTER_TIMEOUT_S
    # (at most 60 s for a LocalProvider)
    block_register_timeout: float | None = None
    interchange_port: int = 0  # 0: any free port
    task_retries_on_manager_lost: int = field(
        default_factory=lambda: int(setting("TASK_RETRIES_ON_MANAGER_LOST")))
    walltime: float | None = None  # default per-task seconds; resource_specification may override
    # upper bound of any task's walltime (s), whatever the submitter asks; the
    # service refuses larger requests at submit, and managers clamp to it
    max_walltime: float | None = None
    max_inflight: int = field(default_factory=lambda: int(setting("AGENT_MAX_INFLIGHT")))
    display_name: str | None = None
    public: bool = False
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.worker_mode not in WORKER_MODES:
            raise ValueError(f"worker_mode must be one of {', '.join(WORKER_MODES)}")
        if self.max_workers_per_node < 0:
            raise ValueError("max_workers_per_node must be >= 0")
        if self.heartbeat_threshold <= self.heartbeat_period:
            raise ValueError("heartbeat_threshold must exceed heartbeat_period")
        for name in ("walltime", "max_walltime", "mem_per_worker", "block_register_timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value > 0 or value == float("inf")):
                raise ValueError(f"{name} must be a positive number of "
                                 f"{'GB' if name == 'mem_per_worker' else 'seconds'} or None")
        if not isinstance(self.address, str) or not self.address.strip():
            raise ValueError('address must be "detect", "0.0.0.0" or an address of this host')
        if self.walltime and self.max_walltime and self.walltime > self.max_walltime:
            raise ValueError(f"walltime ({self.walltime:g}s) exceeds max_walltime "
                             f"({self.max_walltime:g}s)")

    def limits(self) -> dict[str, float]:
        """The owner's bounds the service enforces at submit (unset ones omitted)."""
        out = {"max_walltime": self.max_walltime, "mem_per_worker": self.mem_per_worker}
        return {k: float(v) for k, v in out.items() if v is not None}

    def workers_per_node(self) -> int:
        """Workers a manager starts: the configured maximum, else one per core
        (divided by cores_per_worker), bounded by memory if mem_per_worker is set."""
        cores = os.cpu_count() or 1
        n = self.max_workers_per_node or max(1, int(cores / max(self.cores_per_worker, 0.01)))
        if self.mem_per_worker:
            try:
                import psutil

                mem_gb = psutil.virtual_memory().available / 2**30
                n = max(1, min(n, int(mem_gb / self.mem_per_worker)))
            except ImportError:
                pass
        return n
