"""MPI mode: which nodes of its block a task gets and the launcher command
that spreads its ranks over them (Parsl HTEX's MPI mode, Globus Compute's
``GlobusMPIEngine``).  Pure decisions, no processes: the manager
(:mod:`endpoint.manager`) asks :class:`NodePool` for nodes and hands each
worker :func:`task_environment` for its task; an ``MPIFunction`` runs
``$PARSL_MPI_PREFIX <cmd>``.

An endpoint is in MPI mode when its config names ``mpi_launcher``; then one
manager runs per block (``SimpleLauncher``) and owns every node of it.
"""
from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: the launchers an endpoint may name (``Config.mpi_launcher``)
LAUNCHERS = ("mpiexec", "srun", "aprun")
#: variables set for an MPI task (the names Parsl's MPI mode uses)
PREFIX_VARS = {"mpiexec": "PARSL_MPIEXEC_PREFIX", "srun": "PARSL_SRUN_PREFIX",
               "aprun": "PARSL_APRUN_PREFIX"}
#: the resource_specification fields that make a task an MPI task
MPI_FIELDS = ("num_nodes", "num_ranks", "ranks_per_node")


class MPIRequestError(ValueError):
    """A task's MPI resource_specification that cannot be met as written."""


class NodesExceeded(MPIRequestError):
    """A task asks for more nodes than a block of its endpoint has."""

    def __init__(self, asked: int, per_block: int):
        self.asked, self.per_block = asked, per_block
        super().__init__(f"the task asks for num_nodes={asked} but a block of this endpoint "
                         f"has {per_block} node{'s' if per_block != 1 else ''} "
                         f"(nodes_per_block={per_block}): ask for at most {per_block}, or ask "
                         f"the endpoint's owner for larger blocks")

    def __reduce__(self) -> tuple[type, tuple[int, int]]:  # rebuilt as itself in the SDK
        return type(self), (self.asked, self.per_block)


@dataclass(frozen=True)
class MPIRequest:
    """One task's MPI shape, normalized: every field set and consistent."""

    num_nodes: int
    ranks_per_node: int
    num_ranks: int
    launcher_options: str = ""


def mpi_request(spec: Mapping[str, Any]) -> MPIRequest | None:
    """The MPI shape of a (validated) resource_specification, or None when it
    asks for none.  Missing fields follow from the others: num_nodes 1,
    ranks_per_node num_ranks / num_nodes (rounded up) or 1, num_ranks
    num_nodes * ranks_per_node; num_ranks above that is refused."""
    if not any(spec.get(k) for k in MPI_FIELDS):
        return None
    nodes = int(spec.get("num_nodes") or 1)
    ranks = spec.get("num_ranks")
    per_node = spec.get("ranks_per_node")
    if per_node is None:
        per_node = -(-int(ranks) // nodes) if ranks else 1
    per_node = int(per_node)
    total = int(ranks) if ranks else nodes * per_node
    if total > nodes * per_node:
        raise MPIRequestError(f"num_ranks={total} does not fit num_nodes={nodes} x "
                              f"ranks_per_node={per_node}")
    return MPIRequest(nodes, per_node, total, str(spec.get("launcher_options") or ""))


def check_fits(request: MPIRequest, nodes_per_block: int) -> None:
    """Refuse (:class:`NodesExceeded`, naming both numbers) a task asking more
    nodes than a block has: it could never start."""
    if request.num_nodes > nodes_per_block:
        raise NodesExceeded(request.num_nodes, nodes_per_block)


def launcher_prefix(launcher: str, request: MPIRequest, hosts: list[str]) -> str:
    """The command that starts ``request``'s ranks on ``hosts`` with ``launcher``."""
    opts = shlex.split(request.launcher_options)
    if launcher == "mpiexec":
        argv = ["mpiexec", "-n", str(request.num_ranks), "--host",
                ",".join(f"{h}:{request.ranks_per_node}" for h in hosts)]
    elif launcher == "srun":
        argv = ["srun", "-N", str(request.num_nodes), "-n", str(request.num_ranks),
                "--ntasks-per-node", str(request.ranks_per_node), "--nodelist", ",".join(hosts)]
    elif launcher == "aprun":
        argv = ["aprun", "-n", str(request.num_ranks), "-N", str(request.ranks_per_node),
                "-L", ",".join(hosts)]
    else:
        raise ValueError(f"mpi_launcher must be one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    return shlex.join(argv + opts)


def task_environment(launcher: str, request: MPIRequest, hosts: list[str]) -> dict[str, str]:
    """The variables an MPI task's worker sets: ``PARSL_MPI_PREFIX`` (the
    endpoint's launcher), the prefix of each launcher, the node list and counts."""
    env = {var: launcher_prefix(name, request, hosts) for name, var in PREFIX_VARS.items()}
    env.update(PARSL_MPI_PREFIX=env[PREFIX_VARS[launcher]],
               PARSL_MPI_NODELIST=",".join(hosts), PARSL_NUM_NODES=str(request.num_nodes),
               PARSL_RANKS_PER_NODE=str(request.ranks_per_node),
               PARSL_NUM_RANKS=str(request.num_ranks))
    return env


# ------------------------------------------------------------- a block's nodes
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def expand_nodelist(nodelist: str) -> list[str]:
    """A Slurm node list (``"n[01-03,7],gpu2"``) as host names, in order."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", nodelist):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not m:
            hosts.append(part)
            continue
        head, ranges, tail = m.groups()
        for r in ranges.split(","):
            rm = _RANGE.match(r)
            if not rm:
                raise ValueError(f"cannot read the node list {nodelist!r}")
            lo, hi = rm.group(1), rm.group(2) or rm.group(1)
            for i in range(int(lo), int(hi) + 1):
                hosts.append(f"{head}{str(i).zfill(len(lo))}{tail}")
    return hosts


def block_nodes(env: Mapping[str, str], hostname: str, nodefile_text: str | None = None,
                nodes_per_block: int = 1) -> list[str]:
    """The nodes of the block a manager runs in: Slurm's job node list, else
    the PBS node file's (``nodefile_text``, one host per line and rank), else
    this host alone, once per node the block has."""
    if env.get("SLURM_JOB_NODELIST"):
        return expand_nodelist(env["SLURM_JOB_NODELIST"])
    if nodefile_text:
        return list(dict.fromkeys(h.strip() for h in nodefile_text.splitlines() if h.strip()))
    return [hostname] if nodes_per_block <= 1 else [hostname] * nodes_per_block


class NodePool:
    """The nodes of one block and which task holds each (a node runs one MPI
    task at a time, as in Parsl's MPI mode)."""

    def __init__(self, nodes: Iterable[str]):
        self.nodes = list(nodes)
        self.held: dict[int, str] = {}  # node index -> task id

    def __len__(self) -> int:
        return len(self.nodes)

    def take(self, task_id: str, count: int) -> list[str] | None:
        """``count`` free nodes for ``task_id`` (now held), or None if fewer are free."""
        free = [i for i in range(len(self.nodes)) if i not in self.held]
        if len(free) < count:
            return None
        for i in free[:count]:
            self.held[i] = task_id
        return [self.nodes[i] for i in free[:count]]

    def release(self, task_id: str) -> None:
        """Free the nodes ``task_id`` held (none: nothing happens)."""
        self.held = {i: t for i, t in self.held.items() if t != task_id}

    def keep_only(self, task_ids: Iterable[str]) -> None:
        """Free every node held by a task not in ``task_ids`` (the running ones)."""
        keep = set(task_ids)
        self.held = {i: t for i, t in self.held.items() if t in keep}


class MPIMode:
    """A manager's MPI mode: its block's nodes, its launcher, and for each MPI
    task the nodes it holds and the environment its worker sets."""

    def __init__(self, launcher: str, nodes: list[str]):
        if launcher not in LAUNCHERS:
            raise ValueError(f"mpi_launcher must be one of {', '.join(LAUNCHERS)}, "
                             f"not {launcher!r}")
        self.launcher = launcher
        self.pool = NodePool(nodes)

    def refusal(self, spec: Mapping[str, Any]) -> MPIRequestError | None:
        """Why a task with ``spec`` can never run in this block, or None."""
        try:
            request = mpi_request(spec)
            if request is not None:
                check_fits(request, len(self.pool))
        except MPIRequestError as e:
            return e
        return None

    def claim(self, task_id: str, spec: Mapping[str, Any]) -> dict[str, str] | None:
        """The environment for task ``task_id`` with its nodes now held ({} for a
        task that asks no MPI resources), or None while too few nodes are free."""
        request = mpi_request(spec)
        if request is None:
            return {}
        hosts = self.pool.take(task_id, request.num_nodes)
        if hosts is None:
            return None
        return task_environment(self.launcher, request, hosts)


def mode_for(launcher: str | None, nodes_per_block: int, hostname: str,
             env: Mapping[str, str]) -> MPIMode | None:
    """A manager's MPI mode from its launch (``launcher`` None: not in MPI mode),
    with its block's nodes read from ``env`` (and the PBS node file it names)."""
    if not launcher:
        return None
    text = None
    if env.get("PBS_NODEFILE") and not env.get("SLURM_JOB_NODELIST"):
        try:
            with open(env["PBS_NODEFILE"]) as f:
                text = f.read()
        except OSError:
            text = None
    return MPIMode(launcher, block_nodes(env, hostname, text, nodes_per_block))
