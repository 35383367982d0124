"""How a manager is launched: one typed spec, built by the endpoint
(:mod:`endpoint.blocks`) and parsed by the manager (:mod:`endpoint.manager`),
so the two sides cannot drift apart.

``ManagerLaunch.to_argv()`` gives the manager's options as ``--flag value``
pairs and ``ManagerLaunch.from_argv()`` reads them back (every field, same
type, same default).  The CurveZMQ keys travel as the *path* of a 0600 key
file (``--curve-keys``, see :mod:`endpoint.curve`), never as values: nothing
secret appears on the command line (``ps``), in the provider's submit script
or in a log.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import MISSING, dataclass, fields


@dataclass
class ManagerLaunch:
    """Everything a manager is told at launch."""

    addr: str  #: the interchange URL (tcp://host:port)
    workers: int  #: worker processes to start
    curve_keys: str  #: path of the 0600 manager key file (never the keys themselves)
    block_id: str = "0"
    manager_id: str | None = None  #: default: <hostname>-<random>
    heartbeat_period: float = 2.0
    heartbeat_threshold: float = 10.0
    prefetch: int = 0  #: tasks held beyond one per worker
    walltime: float | None = None  #: default per-task walltime (s)
    max_walltime: float | None = None  #: the owner's bound on any task's walltime (s)
    worker_cmd_prefix: str = ""
    working_dir: str | None = None  #: workers' cwd; default: a per-block temporary directory
    worker_mode: str = "no_container"
    container_runtime: str | None = None
    container_options: str = ""
    mem_per_worker: float | None = None  #: GB of address space per worker
    #: accelerator ids, comma separated: worker i gets the i-th (endpoint.affinity)
    accelerators: str = ""
    #: how workers are pinned to CPUs (``Config.cpu_affinity``; endpoint.affinity)
    cpu_affinity: str = "none"
    #: MPI mode's launcher (mpiexec, srun, aprun; ``Config.mpi_launcher``): one
    #: manager owns the block's ``nodes_per_block`` nodes (endpoint.mpi)
    mpi_launcher: str | None = None
    nodes_per_block: int = 1
    #: a fresh container for every task (``worker_mode="singularity_single_use"``)
    single_use: bool = False
    #: log at DEBUG (``Config.worker_debug``)
    debug: bool = False
    #: ``host:pid:start_time`` of the endpoint daemon when the block runs on its
    #: host (LocalProvider): the manager ends itself when that process is gone
    supervisor: str | None = None
    #: started by hand (``funcx-endpoint manager``), not by a block: the endpoint
    #: never tells it to shut down, and it does not die with its parent process
    hand_started: bool = False
    #: the longest wait (s) between reconnects while the interchange is silent
    reconnect_max: float = 30.0

    @staticmethod
    def _flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    def to_argv(self) -> list[str]:
        """The options, ``--flag value`` for every field that is set."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.default is not MISSING and value == f.default
                                 and f.name != "block_id"):
                continue
            if isinstance(value, bool):  # a switch: present when true
                out.append(self._flag(f.name))
                continue
            text = str(value)
            if text.startswith("-"):  # e.g. container options: one token, not a flag
                out.append(f"{self._flag(f.name)}={text}")
            else:
                out += [self._flag(f.name), text]
        return out

    def command(self, python: str = sys.executable) -> list[str]:
        """The full argv that starts this manager."""
        return [python, "-m", "endpoint.manager", *self.to_argv()]

    def shell(self, python: str = sys.executable) -> str:
        return " ".join(shlex.quote(a) for a in self.command(python))

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        ap = argparse.ArgumentParser(
            prog="python -m endpoint.manager",
            description="funcX manager (started by the endpoint's provider)")
        hints = {"int": int, "float": float, "str": str}
        for f in fields(cls):
            base = str(f.type).split("|")[0].strip()
            kind = hints.get(base, str)
            if base == "bool":
                ap.add_argument(cls._flag(f.name), dest=f.name, action="store_true",
                                default=f.default)
            elif f.default is MISSING:
                ap.add_argument(cls._flag(f.name), dest=f.name, type=kind, required=True)
            else:
                ap.add_argument(cls._flag(f.name), dest=f.name, type=kind, default=f.default)
        return ap

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> ManagerLaunch:
        """Parse what :meth:`to_argv` made (exits with usage on a bad command line).

        ``--flag=VALUE`` tokens of string options are taken as written: argparse
        drops a value that is exactly ``--`` (its end-of-options marker)."""
        args = list(sys.argv[1:] if argv is None else argv)
        texts = {cls._flag(f.name): f.name for f in fields(cls)
                 if str(f.type).split("|")[0].strip() == "str"}
        verbatim: dict[str, str] = {}
        rest = []
        for token in args:
            flag, eq, value = token.partition("=")
            if eq and flag in texts:
                verbatim[texts[flag]] = value
                rest.append(f"{flag}=_")  # still seen (a required option stays satisfied)
            else:
                rest.append(token)
        parsed = vars(cls.parser().parse_args(rest))
        return cls(**{**parsed, **verbatim})
