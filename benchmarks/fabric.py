"""A funcX service and its endpoints, all local, in a throwaway ``FUNCX_HOME``,
and the funcX side of every figure.

``with Fabric() as fab:`` starts the service (embedded redis-server,
gunicorn, ingester, RQ worker) and one endpoint with 2 workers; leaving the
block stops every endpoint and the service (killing what does not stop) and
removes the home, also on errors.

The service runs with BENCH_ENV over the defaults: no other ``FUNCX_*``
variable of the caller reaches it, except the service tier's size
(:data:`KEEP_ENV`), so ``FUNCX_WEB_WORKERS=8 python -m benchmarks run`` sizes
the web tier the aggregate figure measures.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psutil

from benchmarks.harness import log, timed
from benchmarks.peers import identity, noop

RESULT_TIMEOUT_S = 600.0
MAIN = "bench"  # the endpoint with 2 workers
AGG = "bench-agg-{}"  # the aggregate figure's endpoints
MIB = 1024 * 1024
#: task input and result limits that let the large-payload figure's 100 MiB
#: array through (the defaults, 10 MiB, refuse it)
LARGE_LIMIT = 128 * MIB
# generous server-side limits: the limiter still runs (its cost is measured),
# but never refuses the benchmark's own traffic
# the benchmarks measure the fabric, not the per-identity fair-share throttles
BENCH_ENV = {"FUNCX_RATE_LIMIT_READ": "1000000 per minute",
             "FUNCX_RATE_LIMIT_WRITE": "1000000 per minute",
             "FUNCX_RATE_LIMIT_TASKS": "off", "FUNCX_SUBMIT_CONCURRENCY_PER_IDENTITY": "0",
             "FUNCX_MAX_PAYLOAD_BYTES": str(LARGE_LIMIT), "FUNCX_MAX_RESULT_BYTES": str(LARGE_LIMIT)}
#: the caller's settings that size the service tier pass through to the service
KEEP_ENV = ("FUNCX_WEB_WORKERS", "FUNCX_WEB_THREADS", "FUNCX_INGESTERS")


def run_tasks(ex, n: int, fn: Callable = noop) -> list:
    """Submit ``n`` tasks ``fn(i)`` to executor ``ex``, collect every result,
    and check each is its ``i``."""
    futs = [ex.submit(fn, i) for i in range(n)]
    got = [f.result(RESULT_TIMEOUT_S) for f in futs]
    if got != list(range(n)):
        raise AssertionError("wrong results")
    return got


def limits_for(mib: int) -> dict[str, str]:
    """Service settings for arrays of up to ``mib`` MiB: task input and result
    limits (at least :data:`LARGE_LIMIT`; the pickled array is a little larger
    than its data), and for arrays past 170 MiB a larger embedded-Redis bound,
    since every result stays FUNCX_RESULT_RETENTION_S (a day) after it is
    fetched: about 12 results of the largest size in a full run."""
    limit = str(max(LARGE_LIMIT, (mib + 16) * MIB))
    env = {"FUNCX_MAX_PAYLOAD_BYTES": limit, "FUNCX_MAX_RESULT_BYTES": limit}
    if mib > 170:  # the default 4gb holds a full run's results up to here
        env["FUNCX_REDIS_MAXMEMORY"] = f"{4096 + 12 * (mib + 16)}mb"
    return env


def _kill_tree(pid: int | None) -> None:
    if not pid:
        return
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


class Fabric:
    def __init__(self, large_mib: int | None = None) -> None:
        #: the largest array of the large-payload figure; None: BENCH_ENV's limits as they are
        self.large_mib = large_mib
        self.home: str | None = None
        self.saved_env: dict[str, str] = {}
        self.sup_pid: int | None = None
        self.started: dict[str, int | None] = {}  # endpoint name -> daemon pid
        self.eids: dict[str, str] = {}  # the aggregate figure's endpoints: name -> id
        self.executors: list = []
        self.fxc: Any = None
        self.ex: Any = None

    # ------------------------------------------------------------- lifecycle
    def __enter__(self) -> Fabric:
        self.saved_env = {k: v for k, v in os.environ.items() if k.startswith("FUNCX_")}
        for k in self.saved_env:  # e.g. a test session's FUNCX_HOME or payload limit
            if k not in KEEP_ENV:
                del os.environ[k]
        self.home = tempfile.mkdtemp(prefix="funcx-bench-")
        os.environ.update(BENCH_ENV, FUNCX_HOME=self.home)
        if self.large_mib is not None:
            os.environ.update(limits_for(self.large_mib))
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        from backend import control
        from funcx import FuncXClient

        t0 = time.perf_counter()
        url = control.start_detached(port=0)
        self.sup_pid = control.status().get("pid")
        log(f"funcX service at {url} (pid {self.sup_pid}) in {time.perf_counter() - t0:.1f}s")
        self.fxc = FuncXClient()
        self.fxc.throttling_enabled = False  # one client drives every figure
        self.fid = self.fxc.register_function(noop)
        self.eid = self.endpoint(MAIN, 2)
        self.ex = self.executor(self.eid)
        self.run_tasks(self.ex, 100)  # warm up

    def __exit__(self, *exc) -> None:
        from backend import control

        for ex in self.executors:
            try:
                ex.shutdown(wait=False)
            except Exception:
                pass
        for name in list(self.started):
            self.stop_endpoint(name)
        try:
            control.stop()
        except Exception as e:
            log(f"service did not stop ({e}); killing it")
            _kill_tree(self.sup_pid)
        for k in [k for k in os.environ if k.startswith("FUNCX_")]:
            del os.environ[k]
        os.environ.update(self.saved_env)
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)

    def endpoint(self, name: str, workers: int) -> str:
        """Configure (once) and start endpoint ``name``; return its id."""
        from endpoint import daemon
        from endpoint.config_file import write_template
        from endpoint.paths import EndpointDir

        ep = EndpointDir(name)
        if not ep.exists():
            write_template(ep.config_file, name, workers=workers)
        self.started[name] = None
        eid = daemon.start(name)
        self.started[name] = daemon.running_pid(ep)
        return eid

    def stop_endpoint(self, name: str) -> None:
        from endpoint import daemon

        pid = self.started.pop(name, None)
        try:
            if pid:
                kids = psutil.Process(pid).children(recursive=True)
            daemon.stop(name)
        except Exception as e:
            log(f"endpoint {name} did not stop ({e}); killing it")
            _kill_tree(pid)
            return
        if pid:  # managers and workers go with their agent; make sure
            for p in kids:
                if p.is_running():
                    p.kill()

    def executor(self, eid: str):
        from funcx import FuncXExecutor

        ex = FuncXExecutor(endpoint_id=eid, client=self.fxc)
        self.executors.append(ex)
        return ex

    def close_executor(self, ex) -> None:
        ex.shutdown(wait=False)
        self.executors.remove(ex)

    # --------------------------------------------------------------- figures
    @staticmethod
    def run_tasks(ex, n: int) -> list:
        return run_tasks(ex, n)

    def throughput(self, n: int) -> float:
        """Tasks/s of ``n`` no-ops through the executor (submit all, collect all)."""
        return n / timed(lambda: self.run_tasks(self.ex, n))

    def call(self, arg):
        return self.ex.submit(noop, arg).result(RESULT_TIMEOUT_S)

    def call_large(self, arr):
        """The large-payload figure's call, as a user writes it."""
        return self.ex.submit(identity, arr).result(RESULT_TIMEOUT_S)

    def startup(self) -> float:
        """Seconds from ``daemon.start`` of a stopped endpoint to its first result."""
        name = "bench-start"
        t0 = time.perf_counter()
        eid = self.endpoint(name, 2)
        ex = self.executor(eid)
        try:
            ex.submit_to_registered_function(self.fid, (1,)).result(RESULT_TIMEOUT_S)
            return time.perf_counter() - t0
        finally:
            self.close_executor(ex)
            self.stop_endpoint(name)

    def batch(self, n: int) -> float:
        """Tasks/s of ``batch_run`` of ``n`` no-ops + ``wait`` + ``get_batch_result``."""
        fxc = self.fxc

        def go() -> None:
            batch = fxc.create_batch()
            for i in range(n):
                batch.add(i, endpoint_id=self.eid, function_id=self.fid)
            ids = fxc.batch_run(batch)
            fxc.wait(ids, timeout=RESULT_TIMEOUT_S)
            res = fxc.get_batch_result(ids)
            if [res[t]["result"] for t in ids] != list(range(n)):
                raise AssertionError("wrong results")

        rate = n / timed(go)
        fxc.func_table.clear()
        return rate

    @contextmanager
    def workers(self, workers: int) -> Iterator:
        """An executor on an endpoint with ``workers`` workers: the main one for
        2, else an endpoint started for the block and stopped after it."""
        if workers == 2:
            yield self.ex
            return
        name = f"bench-w{workers}"
        ex = self.executor(self.endpoint(name, workers))
        try:
            yield ex
        finally:
            self.close_executor(ex)
            self.stop_endpoint(name)

    def scaling(self, workers: int, n: int, repeat: int) -> list[float]:
        """Executor tasks/s of ``n`` no-ops on an endpoint with ``workers``
        workers, ``repeat`` times."""
        with self.workers(workers) as ex:
            self.run_tasks(ex, 100)  # warm up
            return [n / timed(lambda: self.run_tasks(ex, n)) for _ in range(repeat)]

    # ------------------------------------------------------------- aggregate
    def aggregate_endpoints(self, count: int, workers: int) -> list[str]:
        """Ids of ``count`` endpoints with ``workers`` workers each, started
        as needed (the aggregate figure adds endpoints as its count grows)."""
        return [self.eids.get(AGG.format(i)) or self._start_agg(i, workers)
                for i in range(count)]

    def _start_agg(self, i: int, workers: int) -> str:
        name = AGG.format(i)
        self.eids[name] = eid = self.endpoint(name, workers)
        return eid

    def stop_aggregate_endpoints(self) -> None:
        for name in [n for n in self.eids if n.startswith(AGG.format(""))]:
            self.eids.pop(name)
            self.stop_endpoint(name)

    def service_tier(self) -> str:
        """The service tier in effect: its web workers and ingesters, as set
        (``funcx.defaults.setting``) and as counted among its processes."""
        from funcx.defaults import setting

        def value(name: str) -> str:
            try:
                return str(setting(name))
            except KeyError:  # a setting this version of funcX does not have
                return "(no setting)"

        web, ingesters = self.service_processes()
        return (f"FUNCX_WEB_WORKERS {value('WEB_WORKERS')} → {web} web workers, "
                f"FUNCX_INGESTERS {value('INGESTERS')} → {ingesters} ingester"
                f"{'' if ingesters == 1 else 's'} (0: sized to the cores)")

    def _service_procs(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.sup_pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    @staticmethod
    def _component(p: psutil.Process) -> str:
        """Which part of the service process ``p`` is: web, ingesters, redis, other."""
        cmd = " ".join(p.cmdline())
        if "backend.ingester" in cmd:
            return "ingesters"
        if "redis-server" in p.name():
            return "redis"
        return "web" if "gunicorn" in cmd else "other"

    def service_processes(self) -> tuple[int, int]:
        """(gunicorn workers, ingesters) running under the service's supervisor."""
        web = ingesters = 0
        for p in self._service_procs():
            try:
                kind = self._component(p)
                if kind == "ingesters":
                    ingesters += 1
                elif kind == "web" and "gunicorn" in " ".join(p.parent().cmdline()):
                    web += 1  # a worker (its parent is the gunicorn master)
            except psutil.Error:
                pass
        return web, ingesters

    def service_cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) the service's processes have used so
        far, by component (web, ingesters, redis, other): deltas over a
        figure give its CPU cost per task on the service host."""
        out: dict[str, float] = {}
        for p in self._service_procs():
            try:
                t = p.cpu_times()
                kind = self._component(p)
                out[kind] = out.get(kind, 0.0) + t.user + t.system
            except psutil.Error:
                pass
        return out

    # ---------------------------------------------------------------- memory
    def redis(self):
        from backend.embedded import EmbeddedRedis
        from backend.redis_conn import connect
        from backend.supervisor import logs_dir
        from funcx.home import service_dir

        return connect(EmbeddedRedis(service_dir() / "redis", logs_dir() / "redis.log").url)

    def rss_mib(self) -> tuple[float, float]:
        """RSS of the service's own processes (supervisor, gunicorn master and
        workers, ingester, RQ worker) and, apart, of its redis-server."""
        root = psutil.Process(self.sup_pid)
        own = redis = 0
        for p in [root, *root.children(recursive=True)]:
            try:
                rss = p.memory_info().rss
                if "redis-server" in p.name():
                    redis += rss
                else:
                    own += rss
            except psutil.NoSuchProcess:
                pass
        return own / 2**20, redis / 2**20

    def redis_per_queued(self, n: int) -> float:
        """Redis bytes per task queued to an endpoint that is not running."""
        info = self.fxc.register_endpoint("bench-idle")
        idle = info.get("endpoint_id") or info["uuid"]
        r = self.redis()
        before = r.info("memory")["used_memory"]
        batch = self.fxc.create_batch()
        for i in range(n):
            batch.add(i, endpoint_id=idle, function_id=self.fid)
        self.fxc.batch_run(batch)
        return (r.info("memory")["used_memory"] - before) / n

    def redis_per_result(self, n: int) -> float:
        """Redis bytes per finished task (record, result, completion event)."""
        r = self.redis()
        before = r.info("memory")["used_memory"]
        self.run_tasks(self.ex, n)
        time.sleep(0.5)  # let the ingester's last pipeline land
        return (r.info("memory")["used_memory"] - before) / n

    def rss_through(self, n: int, chunk: int = 10_000) -> tuple[tuple, tuple]:
        """(service, redis) RSS in MiB before and after ``n`` tasks pass through."""
        before = self.rss_mib()
        done = 0
        while done < n:
            step = min(chunk, n - done)
            self.run_tasks(self.ex, step)
            done += step
        time.sleep(0.5)
        return before, self.rss_mib()
