"""The peers funcX is measured against, each with 2 workers on this machine
unless a figure asks for another count (``Peer(workers=8)``): Parsl's
HighThroughputExecutor driven directly, a Dask distributed LocalCluster, Ray,
and ``multiprocessing.Pool`` (the no-service floor).

Every peer has the same small interface: ``start()``, ``map_noop(n)`` (submit
``n`` no-op tasks, collect every result), ``call(arg)`` (one task, wait for
its result) and ``stop()``, which must leave no process behind.  Peers that
have their own way of moving a large object also have ``call_large(arr)``:
the array to a worker, through ``identity`` and back, as that system's users
would do it (Dask: scatter + submit + gather; Ray: put + remote + get).
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 300.0  # one result or one batch; a hung peer must not hang the suite


def noop(x=None):
    return x


def identity(x):
    """The large-payload figure's task: its argument, returned."""
    return x


def _worker_env() -> None:
    """Workers of every peer import ``benchmarks.peers.noop`` by name, and
    Parsl starts its interchange and workers as console scripts of this venv."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in paths if p]])
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ["PATH"]


class Peer:
    name = "peer"
    modules: tuple[str, ...] = ()
    #: whether :meth:`call_large` is implemented (the large-payload figure)
    large = False
    #: whether the scaling figure runs it at each worker count
    scales = False

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers

    def load(self) -> None:
        """Import the peer's library (not part of its start-up time)."""
        import importlib

        _worker_env()
        for m in self.modules:
            importlib.import_module(m)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def map_noop(self, n: int) -> list:
        raise NotImplementedError

    def call(self, arg):
        raise NotImplementedError

    def call_large(self, arr):
        """``identity(arr)`` on a worker, by the system's own large-object route."""
        raise NotImplementedError

    def __enter__(self) -> Peer:
        self.load()
        self._before = {p.pid for p in psutil.Process().children(recursive=True)}
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """``stop()``, then kill whatever the peer started that outlived it."""
        before: set[int] = getattr(self, "_before", set())
        ours = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and not _shared_helper(p)]
        try:
            self.stop()
        finally:
            _, alive = psutil.wait_procs(ours, timeout=3)
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass


def _shared_helper(proc: psutil.Process) -> bool:
    """multiprocessing's resource tracker / forkserver: this process's, not a peer's."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "multiprocessing.resource_tracker" in cmd or "multiprocessing.forkserver" in cmd


class ParslPeer(Peer):
    name = "Parsl HTEX (direct)"
    modules = ("parsl", "parsl.executors", "parsl.providers")
    large = True
    scales = True

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self.dfk: Any = None
        self.htex: Any = None
        self.run_dir: str | None = None

    def start(self) -> None:
        import parsl
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor
        from parsl.providers import LocalProvider

        self.run_dir = run_dir = tempfile.mkdtemp(prefix="parsl-bench-")
        self.htex = HighThroughputExecutor(
            max_workers_per_node=self.workers, provider=LocalProvider(init_blocks=1, max_blocks=1))
        self.dfk = parsl.load(Config(executors=[self.htex], run_dir=run_dir))

    def stop(self) -> None:
        if self.dfk is not None:
            import parsl

            try:
                self.dfk.cleanup()
            finally:
                parsl.clear()
                self.dfk = None
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def map_noop(self, n: int) -> list:
        futs = [self.htex.submit(noop, {}, i) for i in range(n)]
        return [f.result(TIMEOUT_S) for f in futs]

    def call(self, arg):
        return self.htex.submit(noop, {}, arg).result(TIMEOUT_S)

    def call_large(self, arr):
        """HTEX has no object store: the array goes pickled in the task."""
        return self.htex.submit(identity, {}, arr).result(TIMEOUT_S)


class DaskPeer(Peer):
    name = "Dask distributed"
    modules = ("dask.distributed",)
    large = True
    scales = True

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self.cluster: Any = None
        self.client: Any = None

    def start(self) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=logging.ERROR)
        self.client = Client(self.cluster)

    def stop(self) -> None:
        for obj in (self.client, self.cluster):
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass
        self.client = self.cluster = None

    def map_noop(self, n: int) -> list:
        futs = self.client.map(noop, range(n), pure=False)
        return self.client.gather(futs)

    def call(self, arg):
        with warnings.catch_warnings():  # "large object in task graph" for 1 MiB
            warnings.simplefilter("ignore")
            return self.client.submit(noop, arg, pure=False).result(TIMEOUT_S)

    def call_large(self, arr):
        """scatter + submit + gather: Dask's documented route for large data."""
        [data] = self.client.scatter([arr], hash=False)
        fut = self.client.submit(identity, data, pure=False)
        try:
            return fut.result(TIMEOUT_S)
        finally:
            fut.release()
            data.release()


class RayPeer(Peer):
    name = "Ray"
    modules = ("ray",)
    large = True
    scales = True

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self.remote: Any = None
        self.remote_identity: Any = None
        self.started = False

    def start(self) -> None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        import ray

        self.started = True
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=True)
        finally:  # ray.init installs its own SIGTERM handler; keep the suite's
            signal.signal(signal.SIGTERM, sigterm)
        self.remote = ray.remote(noop)
        self.remote_identity = ray.remote(identity)

    def stop(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False

    def map_noop(self, n: int) -> list:
        import ray

        return ray.get([self.remote.remote(i) for i in range(n)], timeout=TIMEOUT_S)

    def call(self, arg):
        import ray

        return ray.get(self.remote.remote(arg), timeout=TIMEOUT_S)

    def call_large(self, arr):
        """put + remote + get: the array goes once into Ray's object store."""
        import ray

        ref = ray.put(arr)
        return ray.get(self.remote_identity.remote(ref), timeout=TIMEOUT_S)


class PoolPeer(Peer):
    name = "multiprocessing.Pool (floor)"
    modules = ("multiprocessing.pool",)

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)
        self.pool: Any = None

    def start(self) -> None:
        import multiprocessing

        # forkserver, not fork: this process runs the SDK's threads (executor,
        # watcher, HTTP pools), and a child forked while one of them holds a
        # lock can hang on it forever
        self.pool = multiprocessing.get_context("forkserver").Pool(self.workers)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None

    def map_noop(self, n: int) -> list:
        return self.pool.map_async(noop, range(n), chunksize=1).get(TIMEOUT_S)

    def call(self, arg):
        return self.pool.apply_async(noop, (arg,)).get(TIMEOUT_S)


PEERS: list[type[Peer]] = [PoolPeer, ParslPeer, DaskPeer, RayPeer]
