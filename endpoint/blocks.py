"""Blocks of managers, provisioned through a Parsl provider.

A block is one provider job; its launcher starts one manager per node, and
each manager connects back to the interchange.
"""
from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path

from endpoint.config import Config

log = logging.getLogger("funcx.blocks")


class Blocks:
    def __init__(self, config: Config, interchange_url: str, run_dir: Path):
        self.config = config
        self.provider = config.provider
        self.url = interchange_url
        scripts = run_dir / "submit_scripts"
        scripts.mkdir(parents=True, exist_ok=True)
        if getattr(self.provider, "script_dir", None) is None:
            self.provider.script_dir = str(scripts)
        self.jobs: dict[str, str] = {}  # block id -> provider job id
        self.next_id = 0

    def manager_command(self, block_id: str) -> str:
        c = self.config
        argv = [sys.executable, "-m", "endpoint.manager", "--addr", self.url,
                "--workers", str(c.workers_per_node()), "--block-id", block_id,
                "--heartbeat-period", str(c.heartbeat_period),
                "--heartbeat-threshold", str(c.heartbeat_threshold),
                "--prefetch", str(c.prefetch_capacity)]
        if c.walltime:
            argv += ["--walltime", str(c.walltime)]
        if c.mem_per_worker:
            argv += ["--mem-per-worker", str(c.mem_per_worker)]
        if c.working_dir:
            argv += ["--working-dir", c.working_dir]
        if c.worker_mode != "no_container":
            argv += ["--worker-mode", c.worker_mode,
                     "--container-options", c.container_cmd_options]
            if c.container_runtime:
                argv += ["--container-runtime", c.container_runtime]
        command = " ".join(shlex.quote(a) for a in argv)
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
