"""The endpoint ``Config``: what ``$FUNCX_HOME/<name>/config.py`` builds.

Option names and meanings follow the funcX endpoint documentation; blocks of
managers are provisioned by any Parsl provider (DESIGN decision 7).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

from funcx.defaults import setting


def _default_provider():
    from parsl.providers import LocalProvider

    return LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1)


WORKER_MODES = ("no_container", "docker", "singularity", "apptainer", "podman")
#: the funcX 0.0.1a5 spellings of ``worker_mode``: (runtime mode, a fresh container per task)
DOCUMENTED_WORKER_MODES = {"singularity_reuse": ("singularity", False),
                           "singularity_single_use": ("singularity", True)}
SCHEDULER_MODES = ("hard", "soft")
#: what a ``launch_cmd`` template may name (the 0.0.1a5 names, and ``manager``:
#: the command that starts this implementation's manager, which it must contain)
LAUNCH_CMD_KEYS = ("manager", "debug", "task_url", "result_url", "cores_per_worker",
                   "nodes_per_block", "heartbeat_period", "heartbeat_threshold", "logdir",
                   "block_id", "workers")
#: ``poll_period`` (ms) when the config does not set it: the interchange wakes
#: on every message anyway, so this only paces its housekeeping (heartbeats,
#: stalls); the 0.0.1a5 reference's 10 ms would wake it 100 times a second
DEFAULT_POLL_PERIOD_MS = 100.0
#: the default ``working_dir``, relative to the endpoint's directory
DEFAULT_WORKING_DIR = "tasks_working_dir"


class Milliseconds(float):
    """A duration in milliseconds (``Config.poll_period``, as the funcX reference
    documents it); :attr:`seconds` converts it for code that counts in seconds."""

    @property
    def seconds(self) -> float:
        return float(self) / 1000.0


@dataclass
class Config:
    """Everything an endpoint needs to run functions."""

    provider: Any = field(default_factory=_default_provider)
    # 0 or float("inf") (the reference's default): one per core (divided by
    # cores_per_worker), as a funcX manager caps max_workers at its cores
    max_workers_per_node: int | float = 0
    cores_per_worker: float = 1.0
    mem_per_worker: float | None = None  # GB; bounds each worker (and workers per node)
    # accelerators of each node (Parsl's available_accelerators): a count N (ids
    # "0".."N-1"), a list of device ids, or "0,1".  One worker per accelerator at
    # most (max_workers_per_node=0: exactly one each); worker i always gets device
    # i in CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES and ZE_AFFINITY_MASK
    available_accelerators: Any = None
    # pin workers to CPUs (Parsl's cpu_affinity): "none", "block", "block-reverse",
    # "alternating", or "list:0,1:2,3" (one CPU list per worker); see endpoint.affinity
    cpu_affinity: str = "none"
    worker_init: str = ""  # shell lines run before the manager starts
    scaling_enabled: bool = True
    # "simple" (scale out with outstanding tasks, in after max_idletime); "none"
    # or None: no scaling (like scaling_enabled=False); a funcx.strategies
    # SimpleStrategy(max_idletime=...) object is read as "simple" with its idle time
    strategy: Any = "simple"
    max_idletime: float = 120.0  # seconds a block may stay idle before scale-in
    heartbeat_period: float = field(default_factory=lambda: float(setting("HEARTBEAT_PERIOD_S")))
    heartbeat_threshold: float = field(default_factory=lambda: float(setting("HEARTBEAT_THRESHOLD_S")))
    # milliseconds between the interchange's housekeeping passes (the reference's
    # unit); a value under 1 is read as seconds, with a warning
    poll_period: float = DEFAULT_POLL_PERIOD_MS
    # no_container, docker, podman, singularity, apptainer; the 0.0.1a5 names
    # singularity_reuse (= singularity: warm container workers) and
    # singularity_single_use (singularity, a fresh container for every task)
    worker_mode: str = "no_container"
    container_type: str | None = None
    container_cmd_options: str = ""  # extra options for `docker run` / `apptainer exec`...
    container_runtime: str | None = None  # path of the runtime; default: worker_mode's name
    prefetch_capacity: int = field(default_factory=lambda: int(setting("MANAGER_PREFETCH")))
    # the workers' directory; None: DEFAULT_WORKING_DIR in the endpoint's
    # directory; a relative path is relative to the endpoint's directory
    working_dir: str | None = None
    worker_debug: bool = False  # managers (the worker pools) log at DEBUG
    # a template of the block's command; "{manager}" is the manager command (see
    # LAUNCH_CMD_KEYS), e.g. "nice -n 5 {manager}".  One without "{manager}" (the
    # 0.0.1a5 process_worker_pool.py form) is ignored, with a warning
    launch_cmd: str | None = None
    # accepted for 0.0.1a5 configs and ignored with a warning at start: managers
    # connect to the interchange's one CurveZMQ port (interchange_port), and each
    # manager runs one container-aware scheduler
    worker_ports: Any = None
    worker_port_range: Any = None
    scheduler_mode: str | None = None
    allowed_functions: list[str] | None = None
    # strategy import paths (or the wildcards "globus_compute_sdk.*Code" / "*Data")
    # a task's function and arguments must be serialized with; None: any.  At
    # least one code and one data strategy; listed in the endpoint's metadata
    allowed_serializers: list[str] | None = None
    # where managers reach the interchange: "detect" (127.0.0.1 for a LocalProvider,
    # else the interface that routes off this host), "0.0.0.0" (bind all, advertise
    # the detected one), or an address/host name of this host (endpoint.addresses)
    address: str = field(default_factory=lambda: str(setting("INTERCHANGE_ADDRESS")))
    # seconds a block's job may run without a manager registering before it is
    # reported, cancelled and resubmitted with back-off; None: BLOCK_REGISTER_TIMEOUT_S
    # (at most 60 s for a LocalProvider)
    block_register_timeout: float | None = None
    interchange_port: int = 0  # 0: any free port
    # re-runs of a task whose worker died (WorkerLost) or whose manager was lost
    # (ManagerLost); the funcX name of the one option whose Globus Compute name
    # is max_retries_on_system_failure (either may be given; both are set)
    task_retries_on_manager_lost: int = field(
        default_factory=lambda: int(setting("TASK_RETRIES_ON_MANAGER_LOST")))
    max_retries_on_system_failure: int | None = None
    walltime: float | None = None  # default per-task seconds; resource_specification may override
    # upper bound of any task's walltime (s), whatever the submitter asks; the
    # service refuses larger requests at submit, and managers clamp to it
    max_walltime: float | None = None
    # MPI mode (endpoint.mpi): "mpiexec", "srun" or "aprun" launches each MPIFunction
    # task's ranks across the nodes its resource_specification asks of the block
    # ($PARSL_MPI_PREFIX); one manager per block owns all its nodes (SimpleLauncher)
    mpi_launcher: str | None = None
    max_inflight: int = field(default_factory=lambda: int(setting("AGENT_MAX_INFLIGHT")))
    display_name: str | None = None
    public: bool = False
    log_level: str = "INFO"
    #: a fresh container for every task (worker_mode="singularity_single_use")
    container_single_use: bool = field(default=False, init=False)
    #: what start warns about, once (see :meth:`start_warnings`)
    _warnings: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.worker_mode in DOCUMENTED_WORKER_MODES:
            self.worker_mode, self.container_single_use = \
                DOCUMENTED_WORKER_MODES[self.worker_mode]
        if self.worker_mode not in WORKER_MODES:
            raise ValueError(f"worker_mode must be one of "
                             f"{', '.join((*WORKER_MODES, *DOCUMENTED_WORKER_MODES))}")
        self._check_workers()
        self._check_placement()
        self._check_poll_period()
        self._check_strategy()
        self._check_ignored()
        self._check_mpi()
        self._check_launch_cmd()
        self._check_system_retries()
        self._check_serializers()
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

    # ------------------------------------------------ the reference's options
    def _check_workers(self) -> None:
        n = self.max_workers_per_node
        if isinstance(n, bool) or not isinstance(n, (int, float)) or math.isnan(n) or n < 0:
            raise ValueError("max_workers_per_node must be >= 0 (0 or inf: one per core)")
        if n == math.inf:
            n = 0
        elif not float(n).is_integer():
            raise ValueError(f"max_workers_per_node must be a whole number, not {n}")
        self.max_workers_per_node = int(n)

    def _check_placement(self) -> None:
        from endpoint.affinity import check_cpu_affinity, parse_accelerators

        #: the accelerator ids (available_accelerators, parsed)
        self.accelerators = parse_accelerators(self.available_accelerators)
        self.cpu_affinity = check_cpu_affinity(self.cpu_affinity)
        if self.cpu_affinity.startswith("list:") and (self.max_workers_per_node
                                                      or self.accelerators):
            ranks = self.cpu_affinity.count(":")
            if ranks != self.workers_per_node():
                raise ValueError(f"cpu_affinity lists {ranks} CPU set(s) for "
                                 f"{self.workers_per_node()} worker(s) per node; give one "
                                 f"per worker")

    def _check_poll_period(self) -> None:
        p = self.poll_period
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < math.inf:
            raise ValueError("poll_period must be a positive number of milliseconds")
        if not isinstance(p, Milliseconds) and p < 1:
            self._warnings.append(
                f"poll_period={p:g} is read as seconds ({p * 1000:g} ms): poll_period is in "
                f"milliseconds (the funcX reference); write poll_period={p * 1000:g}")
            p = p * 1000
        self.poll_period = Milliseconds(p)

    def _check_strategy(self) -> None:
        s = self.strategy
        if s is None or (isinstance(s, str) and s.lower() == "none"):
            self.strategy, self.scaling_enabled = "none", False
        elif isinstance(s, str):
            if s != "simple":
                self._warnings.append(f"strategy={s!r} is not known here; the simple "
                                      f"strategy is used (scale out with outstanding tasks, "
                                      f"in after max_idletime)")
                self.strategy = "simple"
        else:  # e.g. funcx.strategies.SimpleStrategy(max_idletime=60)
            kind = type(s).__name__
            if kind not in ("SimpleStrategy", "KubeSimpleStrategy"):
                self._warnings.append(f"strategy {kind} is not known here; the simple "
                                      f"strategy is used")
            idle = getattr(s, "max_idletime", None)
            if isinstance(idle, (int, float)) and not isinstance(idle, bool) and idle >= 0:
                self.max_idletime = float(idle)
            self.strategy = "simple"

    def _check_ignored(self) -> None:
        for name in ("worker_ports", "worker_port_range"):
            if getattr(self, name) is not None:
                self._warnings.append(
                    f"{name}={getattr(self, name)!r} is ignored: managers connect to the "
                    f"interchange's one CurveZMQ port (set interchange_port to fix it)")
        if self.scheduler_mode is not None:
            if self.scheduler_mode not in SCHEDULER_MODES:
                raise ValueError(f"scheduler_mode must be one of {', '.join(SCHEDULER_MODES)}")
            self._warnings.append(
                f"scheduler_mode={self.scheduler_mode!r} is ignored: each manager keeps warm "
                f"workers per container and restarts an idle worker into the container a "
                f"task needs (one scheduler)")
        if self.container_type is not None:
            kind = str(self.container_type).lower()
            if self.worker_mode == "no_container":
                self._warnings.append(
                    f"container_type={self.container_type!r} is ignored: worker_mode="
                    f"'no_container' runs no containers (choose the runtime with worker_mode)")
            elif kind != self.worker_mode and not {kind, self.worker_mode} <= {
                    "singularity", "apptainer"}:
                self._warnings.append(
                    f"container_type={self.container_type!r} is ignored: containers run with "
                    f"worker_mode={self.worker_mode!r}")

    def _check_launch_cmd(self) -> None:
        cmd = self.launch_cmd
        if cmd is None:
            return
        if not isinstance(cmd, str) or not cmd.strip():
            raise ValueError("launch_cmd must be a command template naming {manager}")
        try:
            cmd.format(**{k: "" for k in LAUNCH_CMD_KEYS})
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"launch_cmd: cannot fill {e} (it may name "
                             f"{', '.join('{' + k + '}' for k in LAUNCH_CMD_KEYS)})") from None
        if "{manager}" not in cmd:
            self._warnings.append(
                "launch_cmd is ignored: it does not contain {manager} (the 0.0.1a5 "
                "process_worker_pool.py does not exist here); write e.g. "
                "launch_cmd='nice -n 5 {manager}'")

    def _check_serializers(self) -> None:
        from funcx.serialize.choice import parse_allowlist

        #: the identifiers allowed_serializers admits (None: every one)
        self.allowed_serializer_ids = parse_allowlist(self.allowed_serializers)

    def serializer_metadata(self) -> dict[str, list[str]]:
        """``{"allowed_serializers": [canonical import paths]}`` for the
        endpoint's metadata, or {} when it accepts any."""
        from funcx.serialize.choice import allowed_paths

        paths = allowed_paths(self.allowed_serializer_ids)
        return {} if paths is None else {"allowed_serializers": paths}

    def _check_mpi(self) -> None:
        from endpoint.mpi import LAUNCHERS

        if self.mpi_launcher is None:
            return
        if self.mpi_launcher not in LAUNCHERS:
            raise ValueError(f"mpi_launcher must be one of {', '.join(LAUNCHERS)} or None, "
                             f"not {self.mpi_launcher!r}")
        launcher = getattr(self.provider, "launcher", None)
        if self.nodes_per_block() > 1 and type(launcher).__name__ != "SimpleLauncher":
            raise ValueError(f"mpi_launcher={self.mpi_launcher!r} with nodes_per_block="
                             f"{self.nodes_per_block()} needs the provider's launcher to be "
                             f"parsl.launchers.SimpleLauncher() (one manager per block, "
                             f"owning all its nodes), not {type(launcher).__name__}")

    def nodes_per_block(self) -> int:
        """The nodes of one block (the provider's ``nodes_per_block``, else 1)."""
        n = getattr(self.provider, "nodes_per_block", 1)
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1

    def _check_system_retries(self) -> None:
        """One option, two names: max_retries_on_system_failure (Globus Compute)
        wins over the default of task_retries_on_manager_lost (funcX); both
        given and different is refused."""
        funcx_name, gc_name = self.task_retries_on_manager_lost, self.max_retries_on_system_failure
        for name, value in (("task_retries_on_manager_lost", funcx_name),
                            ("max_retries_on_system_failure", gc_name)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value <= 1000):
                raise ValueError(f"{name} must be a whole number from 0 to 1000")
        if gc_name is not None:
            default = int(setting("TASK_RETRIES_ON_MANAGER_LOST"))
            if funcx_name not in (default, gc_name):
                raise ValueError("task_retries_on_manager_lost and max_retries_on_system_failure "
                                 "are one option (two names): give one")
            self.task_retries_on_manager_lost = gc_name
        self.max_retries_on_system_failure = self.task_retries_on_manager_lost

    def add_warning(self, text: str) -> None:
        """One more thing for :meth:`start_warnings` to say."""
        self._warnings.append(text)

    def start_warnings(self) -> list[str]:
        """The options accepted here but ignored or reinterpreted: the endpoint
        logs each once, at WARNING, when it starts."""
        return list(self._warnings)

    def launch_command(self, manager: str, **values: Any) -> str:
        """The block's command: ``launch_cmd`` filled in (``manager``: the
        manager's command line), or the manager's command line itself."""
        if not self.launch_cmd or "{manager}" not in self.launch_cmd:
            return manager
        fill = {k: "" for k in LAUNCH_CMD_KEYS}
        fill.update(values, manager=manager)
        return self.launch_cmd.format(**fill)

    def resolve_working_dir(self, endpoint_dir: str | os.PathLike) -> None:
        """Make ``working_dir`` absolute: by default DEFAULT_WORKING_DIR in the
        endpoint's directory; a relative one relative to that directory."""
        wd = os.path.expanduser(self.working_dir or DEFAULT_WORKING_DIR)
        self.working_dir = os.path.join(os.fspath(endpoint_dir), wd)

    def limits(self) -> dict[str, float | int]:
        """The owner's bounds the service enforces at submit (unset ones omitted)."""
        out = {"max_walltime": self.max_walltime, "mem_per_worker": self.mem_per_worker}
        limits = {k: float(v) for k, v in out.items() if v is not None}
        if self.mpi_launcher:  # an MPI task may ask at most one block's nodes
            limits["max_nodes"] = self.nodes_per_block()
        return limits

    def workers_per_node(self) -> int:
        """Workers a manager starts: the configured maximum, else one per core
        (divided by cores_per_worker), bounded by memory if mem_per_worker is set."""
        cores = os.cpu_count() or 1
        n = int(self.max_workers_per_node) or max(1, int(cores / max(self.cores_per_worker, 0.01)))
        if self.accelerators:  # Parsl's rule: one worker per accelerator at most;
            # with the default max_workers_per_node (0), exactly one each
            n = min(int(self.max_workers_per_node) or len(self.accelerators),
                    len(self.accelerators))
        if self.mem_per_worker:
            try:
                import psutil

                mem_gb = psutil.virtual_memory().available / 2**30
                n = max(1, min(n, int(mem_gb / self.mem_per_worker)))
            except ImportError:
                pass
        return n
