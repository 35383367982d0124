"""An isolated funcX fabric for fault tests, and the batch every fault test runs.

``Fabric`` runs its OWN service (``funcx service start --detach``) and its OWN
endpoint (``funcx-endpoint start``) as real processes under a private
``FUNCX_HOME``, so the test session's shared service is never touched.  It
finds the processes a fault test kills (gunicorn workers, redis-server, the
agent, managers, workers) by their command line and their ``FUNCX_HOME``,
and on close stops everything and kills whatever is left of it.

``FaultBatch`` is the workload: >= 1,000 tasks with durations of 0-20 ms drawn
from a fixed seed, a known result per task, and ~1% that raise ValueError on
purpose.  After the fault it inspects Redis directly: every task terminal,
exactly one completion event per task in the task group's events stream,
right results, right error types.  Each run adds a row to the fault table.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import redis

ENDPOINT = "faults"
RESULTS_TIMEOUT_S = float(os.environ.get("FUNCX_FAULT_RESULTS_TIMEOUT_S", "150"))
ROWS: list[dict] = []  # the fault table, printed at the end of the session
LOAD: list[dict] = []  # load-test figures

CONFIG = """from parsl.providers import LocalProvider

from endpoint.config import Config

config = Config(
    provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
    max_workers_per_node={workers},
    heartbeat_period=0.5,
    heartbeat_threshold=3,
    task_retries_on_manager_lost=2,
{extra})
"""


# ------------------------------------------------------------ remote functions
def work(i, seconds, fail):
    """A task of the batch: sleep, then return f(i) (or raise on purpose)."""
    import time

    time.sleep(seconds)
    if fail:
        raise ValueError(f"task {i} fails on purpose")
    return i * 31 + 7


def expected(i: int) -> int:
    return i * 31 + 7


def hog(i):
    """Fill this worker's memory until the allocation fails (or the worker dies)."""
    chunks = []
    while True:
        chunks.append(bytearray(64 * 2**20))


def noop(x=None):
    return x


# -------------------------------------------------------------------- fabric
def _descendants_ok(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def wait_until(predicate, timeout: float, step: float = 0.1):
    """Bounded wait for what only polling can tell (a restarted process answering)."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        pause.wait(step)


class Fabric:
    """A service and an endpoint in their own ``FUNCX_HOME`` (real processes)."""

    def __init__(self, root: Path, env: dict | None = None, workers: int = 4,
                 endpoint_options: dict | None = None):
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
        self.env.update({"FUNCX_HOME": str(self.home), **(env or {})})
        self.workers = workers
        self.endpoint_options = endpoint_options or {}
        self.url: str | None = None
        self.port = 0
        self.eid: str | None = None
        self._clients: list = []

    # ----------------------------------------------------------- commands
    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def funcx(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "funcx_cli.main", *args], timeout)

    def funcx_endpoint(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        script = Path(sys.executable).parent / "funcx-endpoint"
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "endpoint.cli"]
        return self.run([*argv, *args], timeout)

    @staticmethod
    def _check(p: subprocess.CompletedProcess, what: str) -> str:
        if p.returncode != 0:
            raise RuntimeError(f"{what} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p.stdout.strip()

    # ------------------------------------------------------------ service
    def start_service(self, port: int | None = None) -> str:
        port = self.port if port is None else port
        out = self._check(self.funcx("service", "start", "--detach", "--port", str(port)),
                          "funcx service start")
        self.url = out.splitlines()[-1].strip()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    def stop_service(self) -> None:
        self._check(self.funcx("service", "stop"), "funcx service stop")

    def service_record(self) -> dict:
        return json.loads((self.home / "service" / "service.json").read_text())

    @property
    def token(self) -> str:
        return json.loads((self.home / "credentials" / "token.json").read_text())["token"]

    @property
    def redis_url(self) -> str:
        pw, port = (self.home / "service" / "redis" / "secret").read_text().split()
        return f"redis://:{pw}@127.0.0.1:{port}/0"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, decode_responses=True, socket_timeout=30,
                                    socket_connect_timeout=5)

    def client(self):
        from funcx import FuncXClient

        fxc = FuncXClient(funcx_service_address=self.url, access_token=self.token)
        fxc.throttling_enabled = False
        self._clients.append(fxc)
        return fxc

    def supervisor(self) -> psutil.Process:
        return psutil.Process(self.service_record()["pid"])

    def gunicorn_master(self) -> psutil.Process:
        for p in self.supervisor().children():
            if "gunicorn" in " ".join(p.cmdline()):
                return p
        raise LookupError("no gunicorn master under the supervisor")

    def web_workers(self) -> list[psutil.Process]:
        return self.gunicorn_master().children()

    def redis_server(self) -> psutil.Process:
        for p in self.supervisor().children():
            if "redis-server" in p.name():
                return p
        raise LookupError("no redis-server under the supervisor")

    def service_rss_mib(self) -> dict:
        """RSS of the service's processes: supervisor and children, redis apart."""
        sup = self.supervisor()
        own = red = 0
        for p in [sup, *_descendants_ok(sup)]:
            try:
                rss = p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            if "redis-server" in p.name():
                red += rss
            else:
                own += rss
        return {"service_mib": round(own / 2**20, 1), "redis_mib": round(red / 2**20, 1)}

    # ----------------------------------------------------------- endpoint
    @property
    def ep_dir(self) -> Path:
        return self.home / ENDPOINT

    def configure_endpoint(self) -> None:
        self.ep_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        extra = "".join(f"    {k}={v!r},\n" for k, v in self.endpoint_options.items())
        (self.ep_dir / "config.py").write_text(CONFIG.format(workers=self.workers, extra=extra))

    def start_endpoint(self) -> str:
        if not (self.ep_dir / "config.py").exists():
            self.configure_endpoint()
        out = self._check(self.funcx_endpoint("start", ENDPOINT), "funcx-endpoint start")
        self.eid = out.rsplit(":", 1)[1].strip()
        return self.eid

    def stop_endpoint(self) -> None:
        self._check(self.funcx_endpoint("stop", ENDPOINT), "funcx-endpoint stop")

    def agent_pid(self) -> int:
        return int((self.ep_dir / "daemon.pid").read_text().strip())

    def ours(self, module: str) -> list[psutil.Process]:
        """Live processes running ``python -m <module>`` under this FUNCX_HOME."""
        out = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                cmd = p.info["cmdline"] or []
                if module in cmd and p.status() != psutil.STATUS_ZOMBIE \
                        and p.environ().get("FUNCX_HOME") == str(self.home):
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return out

    def managers(self) -> list[psutil.Process]:
        return self.ours("endpoint.manager")

    def worker_procs(self) -> list[psutil.Process]:
        """Workers of this home's managers (a worker's environment is scrubbed of
        FUNCX_HOME, so they are found as the managers' children)."""
        out = []
        for m in self.managers():
            try:
                out += [c for c in m.children()
                        if "endpoint.worker" in (c.cmdline() or [])
                        and c.status() != psutil.STATUS_ZOMBIE]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        return out

    def wait_workers(self, n: int, timeout: float = 30) -> list[psutil.Process]:
        return wait_until(lambda: (lambda ws: ws if len(ws) >= n else None)(self.worker_procs()),
                          timeout) or []

    # -------------------------------------------------------------- life
    def start(self) -> Fabric:
        self.start_service(0)
        self.start_endpoint()
        return self

    def close(self) -> None:
        for fxc in self._clients:
            try:
                fxc.web_client.close()
            except Exception:
                pass
        for step in (self.stop_endpoint, self.stop_service):
            try:
                step()
            except Exception as e:  # noqa: BLE001 - whatever is left is killed below
                print(f"fabric teardown: {e}", file=sys.stderr)
        self.kill_leftovers()

    def kill_leftovers(self) -> None:
        """SIGKILL every process still running under this FUNCX_HOME (and the
        supervisor's children, e.g. a redis-server started in its own session)."""
        mine = []
        for p in psutil.process_iter():
            try:
                if p.pid != os.getpid() and p.environ().get("FUNCX_HOME") == str(self.home):
                    mine.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        for p in list(mine):
            mine.extend(_descendants_ok(p))
        for p in mine:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(mine, timeout=10)

    def logs(self, tail: int = 4000) -> str:
        out = []
        for path in [*sorted((self.home / "service" / "logs").glob("*.log")),
                     self.ep_dir / "endpoint.log"]:
            try:
                out.append(f"--- {path.name} ---\n{path.read_text(errors='replace')[-tail:]}")
            except FileNotFoundError:
                pass
        return "\n".join(out)


# ------------------------------------------------------------ the workload
@dataclass
class Row:
    fault: str
    submitted: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    recover_s: float | None = None
    extra: dict = field(default_factory=dict)


def still_running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` still running (a zombie has ended: it only awaits reaping)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def plan(n: int, seed: int, fail_share: float = 0.01) -> list[tuple[int, float, bool]]:
    """(index, duration, fails) per task: 0-20 ms, ~1% failing, from a fixed seed."""
    rng = random.Random(seed)
    return [(i, round(rng.uniform(0.0, 0.020), 4), rng.random() < fail_share) for i in range(n)]


class FaultBatch:
    def __init__(self, fab: Fabric, fault: str, n: int = 1000, seed: int = 1234):
        self.fab, self.fault = fab, fault
        self.fxc = fab.client()
        self.fid = self.fxc.register_function(work)
        self.tg = str(uuid.uuid4())
        self.items = plan(n, seed)
        self.by_tid: dict[str, tuple[int, float, bool]] = {}
        self.special: dict[str, tuple[type, ...]] = {}  # tid -> allowed error types
        self.order: list[str] = []
        self.t_fault: float | None = None
        self.t_restored: float | None = None
        self.row = Row(fault)
        self.r = fab.redis()

    # ---------------------------------------------------------- submitting
    def submit(self, items, chunk: int = 100, after_chunk=None) -> list[str]:
        """Submit ``items`` in requests of ``chunk`` tasks; ``after_chunk(k)``
        runs after the k-th request."""
        out = []
        for k, start in enumerate(range(0, len(items), chunk), 1):
            part = items[start:start + chunk]
            batch = self.fxc.create_batch(task_group_id=self.tg)
            for i, d, fail in part:
                batch.add(i, d, fail, endpoint_id=self.fab.eid, function_id=self.fid)
            tids = self.fxc.batch_run(batch)
            assert len(tids) == len(part)
            for tid, item in zip(tids, part):
                self.by_tid[tid] = item
            self.order += tids
            out += tids
            if after_chunk is not None:
                after_chunk(k)
        return out

    def submit_special(self, fn, args_list, allowed: tuple[type, ...]) -> list[str]:
        """Tasks of another function whose only acceptable outcome is one of ``allowed``."""
        fid = self.fxc.register_function(fn)
        batch = self.fxc.create_batch(task_group_id=self.tg)
        for a in args_list:
            batch.add(a, endpoint_id=self.fab.eid, function_id=fid)
        tids = self.fxc.batch_run(batch)
        for t in tids:
            self.special[t] = allowed
        self.order += tids
        return tids

    def submit_with_executor(self, ex, items) -> list:
        """Futures of ``items`` submitted through a FuncXExecutor (coalesced by it)."""
        return [ex.submit_to_registered_function(self.fid, (i, d, fail)) for i, d, fail in items]

    def adopt(self, futures, items, timeout: float = RESULTS_TIMEOUT_S) -> None:
        """Track the tasks behind executor futures, once the service has given them ids."""
        deadline = time.monotonic() + timeout
        for fut, item in zip(futures, items):
            fut.submitted.wait(max(0.0, deadline - time.monotonic()))
            if fut.task_id is None:
                exc = fut.exception(0) if fut.done() else None
                raise AssertionError(f"the executor never submitted task #{item[0]}: {exc!r}")
            self.by_tid[fut.task_id] = item
            self.order.append(fut.task_id)

    def wait_share(self, tids: list[str], timeout: float = 60) -> None:
        """Until these tasks (a share of the batch) are terminal: pushed by the
        task group's completion events."""
        self.fxc.wait(tids, timeout=timeout)

    def fault_now(self) -> float:
        """Mark the moment the fault is injected (and how far the batch had got)."""
        self.t_fault = time.time()
        if "done_at_fault" not in self.row.extra:
            self.mark_progress()
        return self.t_fault

    def mark_progress(self) -> None:
        """How many tasks had finished when the fault came."""
        try:
            self.row.extra["done_at_fault"] = self.r.xlen(f"fx:tg:{self.tg}:events")
        except redis.RedisError:
            pass  # Redis is the fault

    def restored_now(self) -> float:
        """Mark the end of a deliberately held outage (e.g. the endpoint restarted)."""
        self.t_restored = time.time()
        self.row.extra["outage_s"] = round(self.t_restored - (self.t_fault or self.t_restored), 2)
        return self.t_restored

    def wait_all(self, timeout: float = RESULTS_TIMEOUT_S) -> None:
        from funcx.errors import TaskPending

        try:
            self.fxc.wait(self.order, timeout=timeout)
        except TaskPending:
            pass  # verify() counts and reports what is not terminal

    # ----------------------------------------------------------- verifying
    def _records(self) -> dict[str, dict]:
        out = {}
        with self.r.pipeline(transaction=False) as p:
            for t in self.order:
                p.hgetall(f"fx:task:{t}")
            for t, rec in zip(self.order, p.execute()):
                out[t] = rec
        return out

    def verify(self, allowed_anywhere: tuple[type, ...] = (), max_anywhere: int | None = None,
               **extra) -> Row:
        """Inspect Redis and record the row; then assert the promises."""
        from funcx.serialize import FuncXSerializer

        ser = FuncXSerializer()
        recs = self._records()
        queued = set(self.r.lrange(f"fx:tg:{self.tg}:tasks", 0, -1))
        events = self.r.xrange(f"fx:tg:{self.tg}:events")
        per_task = Counter(f["task_id"] for _, f in events)
        terminal = {t for t, rec in recs.items()
                    if rec.get("status") in ("success", "failed", "cancelled")}
        problems: list[str] = []
        anywhere, special = Counter(), Counter()
        for t in self.order:
            rec = recs[t]
            if t not in terminal:
                problems.append(f"{t}: not terminal ({rec.get('status', 'no record')})")
                continue
            if t in self.special:
                ok = self.special[t]
                got = self._exception(rec, ser)
                special[type(got).__name__ if rec["status"] == "failed" else rec["status"]] += 1
                if not isinstance(got, ok):
                    problems.append(f"{t}: expected one of {[c.__name__ for c in ok]}, got {got!r}")
                continue
            i, _, fail = self.by_tid[t]
            if rec["status"] == "success":
                value = ser.deserialize(rec["result"])
                if fail or value != expected(i):
                    problems.append(f"{t} (#{i}): result {value!r}, expected "
                                    f"{'ValueError' if fail else expected(i)}")
                continue
            got = self._exception(rec, ser)
            if fail and isinstance(got, ValueError):
                continue
            if allowed_anywhere and isinstance(got, allowed_anywhere):
                anywhere[type(got).__name__] += 1
                continue
            problems.append(f"{t} (#{i}): failed with {got!r}"
                            f"{' (expected ValueError)' if fail else ''}")
        duplicated = [t for t, c in per_task.items() if c > 1]
        missing_events = [t for t in terminal if per_task[t] == 0]
        stray = set(per_task) - set(self.order)
        row = self.row
        row.submitted = len(self.order)
        row.completed = len(terminal)
        row.lost = len(self.order) - len(terminal)
        row.duplicated = len(duplicated)
        row.recover_s = self._recover_s(events, recs, self.t_fault)
        if self.t_restored is not None:
            row.extra["recover_after_restore_s"] = self._recover_s(events, recs, self.t_restored)
        row.extra.update(extra)
        row.extra["failed_by_fault"] = dict(anywhere)
        if special:
            row.extra["victim_outcomes"] = dict(special)
        row.extra["deliberate_failures"] = sum(1 for t in self.by_tid if self.by_tid[t][2])
        if set(self.order) - queued:
            problems.append(f"{len(set(self.order) - queued)} task ids missing from the task group")
        record(row)
        assert not duplicated, f"tasks with more than one completion event: {duplicated[:5]}"
        assert not missing_events, f"terminal tasks without a completion event: {missing_events[:5]}"
        assert not stray, f"completion events of unknown tasks: {sorted(stray)[:5]}"
        assert not problems, f"{len(problems)} problem(s):\n" + "\n".join(problems[:20])
        if max_anywhere is not None:
            assert sum(anywhere.values()) <= max_anywhere, anywhere
        return row

    @staticmethod
    def _exception(rec: dict, ser) -> object:
        data = rec.get("exc_data")
        if not data:
            return f"(no exception data) {rec.get('exception', '')[-300:]}"
        try:
            return ser.deserialize(data)
        except Exception as e:  # noqa: BLE001 - reported as the outcome
            return f"(undeserializable exception: {e})"

    @staticmethod
    def _recover_s(events, recs, since: float | None) -> float | None:
        """Seconds from ``since`` (the fault: the kill done, the stop done)
        until the first completion event of a task that finished running
        after it: results flow again."""
        if since is None:
            return None
        for eid, f in events:
            t_event = int(eid.split("-")[0]) / 1000
            if t_event < since:
                continue
            try:
                done = float(recs.get(f["task_id"], {}).get("completion_t") or 0)
            except ValueError:
                done = 0
            if done > since:
                return round(t_event - since, 2)
        return None


def record(row: Row) -> None:
    d = asdict(row)
    ROWS.append(d)
    path = os.environ.get("FUNCX_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(d) + "\n")


def record_load(row: dict) -> None:
    LOAD.append(row)
    path = os.environ.get("FUNCX_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"load": row}) + "\n")


def table(rows: list[dict]) -> str:
    head = ("fault", "submitted", "completed", "lost", "duplicated", "time to recover")
    def recover(r: dict) -> str:
        if r.get("recover_s") is None:
            return "-"
        after = r["extra"].get("recover_after_restore_s")
        return f"{r['recover_s']:.2f} s" + ("" if after is None else f" ({after:.2f} s after restart)")

    lines = [[r["fault"], str(r["submitted"]), str(r["completed"]), str(r["lost"]),
              str(r["duplicated"]), recover(r)] for r in rows]
    width = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(head)]
    fmt = lambda cols: "| " + " | ".join(c.ljust(w) for c, w in zip(cols, width)) + " |"  # noqa: E731
    return "\n".join([fmt(head), "|" + "|".join("-" * (w + 2) for w in width) + "|",
                      *(fmt(line) for line in lines)])


def sigkill(procs) -> list[int]:
    pids = []
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
            pids.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    return pids
