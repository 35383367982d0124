"""Blocks of managers, provisioned through a Parsl provider.

A block is one provider job; its launcher starts one manager per node, and
each manager connects back to the interchange.  The manager's command line is
a :class:`endpoint.launch.ManagerLaunch`; it names the endpoint's manager key
file (a path, never a key).  Submit scripts are written to a 0700 directory.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import psutil

from endpoint.addresses import is_local_provider
from endpoint.block_health import scrub
from endpoint.config import Config
from endpoint.launch import ManagerLaunch
from funcx.lifecycle import ProcessRecord, reap, supervisor_spec

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
        self.running: set[str] = set()  # blocks whose job ran at the last status query
        self.last_error: str | None = None  # the last failed submission's error (scrubbed)
        # block ids go on across daemon starts (kept in the run dir): the managers
        # of a dead daemon's batch jobs reconnect to its successor, and must not
        # be taken for the successor's own blocks of the same id
        self.seq_file = run_dir / "block_seq"
        self.next_id = _read_seq(self.seq_file)
        # blocks that run on this host (LocalProvider): their process, by pid and
        # start time, kept in a file so a daemon that starts after this one died
        # can end them (see read_block_records / endpoint.daemon)
        self.local = _is_local(self.provider)
        self.record_file = block_record_file(run_dir)
        self.records: dict[str, ProcessRecord] = {}
        self.ended: set[int] = set()  # local block pids to reap (we may be their subreaper)
        self.supervisor = supervisor_spec() if self.local else None
        # options accepted from the funcX reference but ignored or reinterpreted
        # here: said once, when the endpoint starts (this object is made once)
        for text in config.start_warnings():
            logging.getLogger("funcx.config").warning("config: %s", text)

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
            accelerators=",".join(c.accelerators), cpu_affinity=c.cpu_affinity,
            worker_mode=c.worker_mode, single_use=containers and c.container_single_use,
            mpi_launcher=c.mpi_launcher or None, nodes_per_block=c.nodes_per_block(),
            debug=bool(c.worker_debug),
            container_options=c.container_cmd_options if containers else "",
            container_runtime=c.container_runtime if containers else None,
            supervisor=self.supervisor)

    def manager_command(self, block_id: str) -> str:
        c = self.config
        launch = self.launch(block_id)
        command = c.launch_command(
            launch.shell(), debug="--debug" if c.worker_debug else "", task_url=self.url,
            result_url=self.url, cores_per_worker=c.cores_per_worker,
            nodes_per_block=getattr(self.provider, "nodes_per_block", 1),
            heartbeat_period=c.heartbeat_period, heartbeat_threshold=c.heartbeat_threshold,
            logdir=c.working_dir or "", block_id=block_id, workers=launch.workers)
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
        """Submit up to ``n`` blocks; return the ids started.  A submit that
        raises is not raised: its error text is kept in :attr:`last_error`
        (None after a submission that worked) for the caller to report."""
        started = []
        for _ in range(n):
            block_id = str(self.next_id)
            try:
                job = self.provider.submit(self.manager_command(block_id), 1,
                                           job_name=f"funcx-block-{block_id}")
            except Exception as e:  # noqa: BLE001 - any provider failure is reported
                self.last_error = scrub(f"{type(e).__name__}: {e}")
                log.error("provider %s failed to submit a block: %s",
                          type(self.provider).__name__, self.last_error)
                break
            self.next_id += 1
            self._save_seq()
            if job is None:
                log.warning("provider declined a new block (at capacity)")
                break
            self.last_error = None
            self.jobs[block_id] = job
            self._record(block_id, job)
            started.append(block_id)
            log.info("started block %s (provider job %s)", block_id, job)
        return started

    def scale_in(self, block_ids: list[str]) -> None:
        jobs = [self.jobs.pop(b) for b in block_ids if b in self.jobs]
        if jobs:
            self.provider.cancel(jobs)
            log.info("cancelled blocks %s", block_ids)
        self._forget(block_ids)

    def forget_finished(self) -> list[str]:
        """Drop blocks whose provider job has ended; return their ids (the
        blocks whose job runs are left in :attr:`running`)."""
        self.reap_orphans()
        if not self.jobs:
            self.running = set()
            return []
        ids = list(self.jobs)
        try:
            statuses = self.provider.status([self.jobs[b] for b in ids])
        except Exception as e:  # a flaky scheduler query: try again next round
            log.warning("provider status failed: %s", scrub(str(e)))
            return []
        gone = [b for b, s in zip(ids, statuses) if getattr(s, "terminal", False)]
        self.running = {b for b, s in zip(ids, statuses) if _runs(s)}
        for b in gone:
            self.jobs.pop(b, None)
        self._forget(gone)
        return gone

    def stop_all(self) -> None:
        self.scale_in(list(self.jobs))

    # ------------------------------------------------- records of local blocks
    def _record(self, block_id: str, job: str) -> None:
        if not self.local:
            return
        try:
            self.records[block_id] = ProcessRecord.of(int(job))
        except (ValueError, psutil.NoSuchProcess) as e:
            log.warning("block %s (job %s): no process to record: %s", block_id, job, e)
            return
        self._save()

    def _forget(self, block_ids: list[str]) -> None:
        changed = False
        for b in block_ids:
            rec = self.records.pop(b, None)
            if rec is not None:
                self.ended.add(rec.pid)
                changed = True
        self.ended = {pid for pid in self.ended if not reap(pid)}
        if changed:
            self._save()

    def reap_orphans(self) -> int:
        """Collect the ended processes re-parented to this daemon (its child
        subreaper role: e.g. a manager whose block script was killed).  Call it
        only from the thread that runs the provider's commands, between them, so
        no command's own child is taken from it.  Returns how many were reaped."""
        if not self.local:
            return 0
        n = 0
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return 0
        for c in children:
            try:
                if c.status() == psutil.STATUS_ZOMBIE and c.pid not in self.ended and reap(c.pid):
                    n += 1
            except psutil.Error:
                pass
        return n

    def _save_seq(self) -> None:
        try:
            tmp = self.seq_file.with_suffix(".tmp")
            tmp.write_text(f"{self.next_id}\n")
            os.replace(tmp, self.seq_file)
        except OSError as e:  # ids then repeat after a restart: worth a word, not a failure
            log.warning("cannot keep the block sequence in %s: %s", self.seq_file, e)

    def _save(self) -> None:
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({b: r.to_dict() for b, r in self.records.items()}))
        os.replace(tmp, self.record_file)


def _read_seq(path: Path) -> int:
    try:
        return max(0, int(path.read_text().split()[0]))
    except (FileNotFoundError, ValueError, IndexError):
        return 0


def _is_local(provider) -> bool:
    return is_local_provider(provider)


def _runs(status: object) -> bool:
    """Whether a Parsl JobStatus says the job is running."""
    state = getattr(status, "state", None)
    return getattr(state, "name", "") == "RUNNING"


def block_record_file(run_dir: Path) -> Path:
    return run_dir / "blocks.json"


def read_block_records(run_dir: Path) -> list[ProcessRecord]:
    """The local blocks a (possibly dead) daemon of this endpoint recorded."""
    try:
        data = json.loads(block_record_file(run_dir).read_text())
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    return [r for r in (ProcessRecord.from_dict(d) for d in data.values()
                        if isinstance(d, dict)) if r is not None]
