"""Blocks of managers, provisioned through a Parsl provider.

A block is one provider job; its launcher starts one manager per node, and
each manager connects back to the interchange.  The manager's command line is
a :class:`endpoint.launch.ManagerLaunch`; it names the endpoint's manager key
file (a path, never a key).  Submit scripts are written to a 0700 directory.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from endpoint.config import Config
from endpoint.launch import ManagerLaunch

log = logging.getLogger("funcx.blocks")


class Blocks:
    def __init__(self, config: Config, interchange_url: str, run_dir: Path,
                 curve_keys: str | os.PathLike):
        """``curve_keys``: the manager key file every manager's launch names."""
        self.config = config
        self.provider = config.provider
        self.url = interchange_url
        self.curve_keys = str(curve_keys)
        scripts = run_dir / "submit_scripts"
        scripts.mkdir(parents=True, exist_ok=True, mode=0o700)
        if getattr(self.provider, "script_dir", None) is None:
            self.provider.script_dir = str(scripts)
        try:  # scripts name the key file and the interchange: owner only
            os.chmod(self.provider.script_dir, 0o700)
        except OSError as e:
            log.warning("cannot make %s private: %s", self.provider.script_dir, e)
        self.jobs: dict[str, str] = {}  # block id -> provider job id
        self.next_id = 0

    def launch(self, block_id: str) -> ManagerLaunch:
        """The launch spec of the managers of block ``block_id``."""
        c = self.config
        containers = c.worker_mode != "no_container"
        return ManagerLaunch(
            addr=self.url, workers=c.workers_per_node(), curve_keys=self.curve_keys,
            block_id=block_id, heartbeat_period=c.heartbeat_period,
            heartbeat_threshold=c.heartbeat_threshold, prefetch=c.prefetch_capacity,
            walltime=c.walltime or None, max_walltime=c.max_walltime or None,
            mem_per_worker=c.mem_per_worker or None, working_dir=c.working_dir or None,
            worker_mode=c.worker_mode,
            container_options=c.container_cmd_options if containers else "",
            container_runtime=c.container_runtime if containers else None)

    def manager_command(self, block_id: str) -> str:
        c = self.config
        command = self.launch(block_id).shell()
        return f"{c.worker_init}\n{command}" if c.worker_init.strip() else command

    @property
    def min_blocks(self) -> int:
        return int(getattr(self.provider, "min_blocks", 0))

    @property
    def max_blocks(self) -> int:
        return int(getattr(self.provider, "max_blocks", 1))

    @property
    def init_blocks(self) -> int:
        return int(getattr(self.provider, "init_blocks", 1))

    def scale_out(self, n: int) -> list[str]:
        started = []
        for _ in range(n):
            block_id = str(self.next_id)
            self.next_id += 1
            job = self.provider.submit(self.manager_command(block_id), 1,
                                       job_name=f"funcx-block-{block_id}")
            if job is None:
                log.warning("provider declined a new block (at capacity)")
                break
            self.jobs[block_id] = job
            started.append(block_id)
            log.info("started block %s (provider job %s)", block_id, job)
        return started

    def scale_in(self, block_ids: list[str]) -> None:
        jobs = [self.jobs.pop(b) for b in block_ids if b in self.jobs]
        if jobs:
            self.provider.cancel(jobs)
            log.info("cancelled blocks %s", block_ids)

    def forget_finished(self) -> list[str]:
        """Drop blocks whose provider job has ended; return their ids."""
        if not self.jobs:
            return []
        ids = list(self.jobs)
        try:
            statuses = self.provider.status([self.jobs[b] for b in ids])
        except Exception as e:  # a flaky scheduler query: try again next round
            log.warning("provider status failed: %s", e)
            return []
        gone = [b for b, s in zip(ids, statuses) if getattr(s, "terminal", False)]
        for b in gone:
            self.jobs.pop(b, None)
        return gone

    def stop_all(self) -> None:
        self.scale_in(list(self.jobs))
