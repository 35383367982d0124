"""Noisy neighbour: a quiet tenant's request latency, idle and while another
tenant attacks the shared service (issue 12, fair sharing).

``python -m benchmarks.noisy_neighbour [--seconds S]`` starts a local service
and one endpoint (benchmarks/fabric.py, loopback only, a throwaway home), and
two users:

* the quiet tenant (the service's local user) makes a steady stream of cheap
  requests: ``GET /v2/whoami`` every 50 ms and, every 10th, a one-task submit
  to the running endpoint followed by a long-poll for its result;
* the noisy tenant (a second user, ``backend.admin.add_user``) keeps 100
  concurrent result long-polls open on its own task group (backing off as
  Retry-After says when refused) and repeatedly submits 100,000 tasks at once
  (refused: TOO_MANY_TASKS, back to back), then the same split into
  10,000-task chunks as the SDK sends them (queued on an endpoint of its own
  with no agent, until its queued-task quota refuses them and it waits
  Retry-After).

It prints the quiet tenant's p50/p99 idle and under attack, and their ratio
(goal: p99 under attack within 2x idle).  Bounded: about 2 x ``--seconds``
plus start-up.

``--profile`` adds, per phase, the CPU seconds of each process role (web
workers, redis-server, ingester, endpoint, the quiet and the noisy client) and
Redis's own time per command (``INFO commandstats``, and ``SLOWLOG`` entries
over 10 ms).  On a small machine the noisy *client* competes with the service
for the same cores; ``--noisy-cpus 1`` pins it to those CPUs and everything
else (service, endpoint, quiet tenant) to the others, idle phase included, as
if the attacker ran on a machine of its own.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading
import time
import uuid

import requests

from benchmarks import fabric
from benchmarks.fabric import Fabric
from benchmarks.harness import log, percentile
from funcx.defaults import setting
from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
PAYLOAD = SER.pack_buffers([SER.serialize((1,)), SER.serialize({})])
PACE_S = 0.05  # the quiet tenant's request interval
NOISY_POLLS = 100
BIG = 100_000
CHUNK = int(setting("BATCH_SUBMIT_SIZE"))  # the SDK's chunk


def _session(token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=NOISY_POLLS + 10))
    return s


class Quiet:
    """The quiet tenant's steady stream; latencies in ms per kind."""

    def __init__(self, url: str, token: str, eid: str, fid: str):
        self.url, self.eid, self.fid = url, eid, fid
        self.s = _session(token)
        self.when: list[tuple[float, float]] = []  # (perf_counter at start, ms) of each whoami

    def whoami(self) -> float:
        t0 = time.perf_counter()
        r = self.s.get(f"{self.url}/v2/whoami", timeout=120)
        r.raise_for_status()
        ms = (time.perf_counter() - t0) * 1000
        self.when.append((t0, ms))
        return ms

    def run(self) -> float:
        """One task: submit, then long-poll its group until the result is there."""
        t0 = time.perf_counter()
        sub = self.s.post(f"{self.url}/v3/endpoints/{self.eid}/submit",
                          json={"tasks": {self.fid: [PAYLOAD]}}, timeout=120)
        sub.raise_for_status()
        tg, after = sub.json()["task_group_id"], "0"
        while True:
            r = self.s.get(f"{self.url}/v2/taskgroup/{tg}/events",
                           params={"after": after, "timeout": 20}, timeout=120)
            if r.status_code == 429:
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            r.raise_for_status()
            body = r.json()
            after = body["last_id"]
            if body["tasks"]:
                return (time.perf_counter() - t0) * 1000

    def measure(self, seconds: float) -> tuple[list[float], list[float]]:
        calls, runs, i = [], [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            calls.append(self.whoami())
            if i % 10 == 0:
                runs.append(self.run())
            i += 1
            time.sleep(max(0.0, PACE_S - (time.monotonic() - t0)))
        return calls, runs


class Noisy:
    """The noisy tenant: 100 long-polls and 100k-task submits, until stopped.
    It runs in a process of its own (:func:`_noisy_main`), so its client-side
    work does not hold the quiet tenant's interpreter lock."""

    def __init__(self, url: str, token: str, stop, attack: str = "both"):
        self.url, self.token, self.stop, self.attack = url, token, stop, attack
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        s = _session(token)
        self.eid = s.post(f"{url}/v3/endpoints", json={"endpoint_name": "noisy"},
                          timeout=60).json()["endpoint_id"]
        self.fid = s.post(f"{url}/v3/functions", timeout=60,
                          json={"function_code": SER.serialize_function(_noop)}).json()[
            "function_uuid"]
        self.tg = s.post(f"{url}/v3/endpoints/{self.eid}/submit", timeout=60,
                         json={"tasks": {self.fid: [""]}}).json()["task_group_id"]
        # encoded once: the attacker's own CPU is not what is measured
        self.big = json.dumps({"tasks": {self.fid: [""] * BIG}}).encode()
        self.chunk = json.dumps({"tasks": {self.fid: [""] * CHUNK}}).encode()

    def _count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def _poll(self) -> None:
        s = _session(self.token)
        while not self.stop.is_set():
            r = s.get(f"{self.url}/v2/taskgroup/{self.tg}/events",
                      params={"after": "0-1", "timeout": 30}, timeout=120)
            self._count(f"long-poll {r.status_code}")
            if r.status_code == 429:
                self.stop.wait(float(r.headers.get("Retry-After", "1")))

    def _submit(self) -> None:
        s = _session(self.token)
        s.headers["Content-Type"] = "application/json"
        path = f"{self.url}/v3/endpoints/{self.eid}/submit"
        while not self.stop.is_set():
            r = s.post(path, data=self.big, timeout=120)
            self._count(f"100k submit {r.status_code} {r.json().get('code', '')}")
            for _ in range(BIG // CHUNK):  # as the SDK splits it
                if self.stop.is_set():
                    return
                r = s.post(path, data=self.chunk, timeout=120)
                self._count(f"{CHUNK} chunk {r.status_code} {r.json().get('code', '')}".strip())
                if r.status_code == 429:  # as the SDK does: back off as told
                    self.stop.wait(float(r.headers.get("Retry-After", "1")))
                    break

    def run(self) -> dict[str, int]:
        threads = []
        if self.attack in ("both", "polls"):
            threads += [threading.Thread(target=self._poll, daemon=True) for _ in range(NOISY_POLLS)]
        if self.attack in ("both", "submits"):
            threads += [threading.Thread(target=self._submit, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return self.counts


def _noisy_main(url: str, token: str, stop, ready, out, cpus=None, attack="both") -> None:
    if cpus:  # before any thread starts: they inherit it
        os.sched_setaffinity(0, cpus)
    noisy = Noisy(url, token, stop, attack)
    ready.set()
    out.put(noisy.run())


def _noop(x):
    return x


def psutil_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, every process's."""
    import psutil

    t = psutil.cpu_times()
    return (sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0),
            getattr(t, "steal", 0.0))


class Profile:
    """CPU seconds per process role, and Redis's time per command, over one phase."""

    def __init__(self, r, sup_pid: int | None, endpoint_pids: list[int | None]):
        self.r, self.sup_pid, self.ep_pids = r, sup_pid, [p for p in endpoint_pids if p]
        self.noisy_pid: int | None = None

    def _roles(self) -> dict[str, float]:
        import psutil

        cpu: dict[str, float] = {}

        def add(role: str, p) -> None:
            try:
                t = p.cpu_times()
            except psutil.Error:
                return
            cpu[role] = cpu.get(role, 0.0) + t.user + t.system

        def tree(pid: int):
            try:
                root = psutil.Process(pid)
                return [root] + root.children(recursive=True)
            except psutil.Error:
                return []

        for p in tree(self.sup_pid) if self.sup_pid else []:
            try:
                cmd = " ".join(p.cmdline())
            except psutil.Error:
                continue
            role = ("web (gunicorn)" if "gunicorn" in cmd else "redis-server" if "redis" in cmd
                    and "backend" not in cmd else "ingester" if "ingester" in cmd
                    else "rq" if "backend.jobs" in cmd else "supervisor")
            add(role, p)
        for pid in self.ep_pids:
            for p in tree(pid):
                add("endpoint", p)
        add("quiet client", psutil.Process())
        if self.noisy_pid:
            for p in tree(self.noisy_pid):
                add("noisy client", p)
        return cpu

    def start(self, quiet: Quiet) -> None:
        self.quiet, self.q0, self.pc0 = quiet, len(quiet.when), time.perf_counter()
        self.machine0 = psutil_cpu()
        self.r.config_set("slowlog-log-slower-than", 10_000)
        self.r.slowlog_reset()
        self.cmd0, self.cpu0, self.t0 = self.r.info("commandstats"), self._roles(), time.monotonic()

    def report(self, phase: str) -> None:
        wall = time.monotonic() - self.t0
        cpu, cmd = self._roles(), self.r.info("commandstats")
        slow = self.r.slowlog_get(128)
        busy, steal = (b - a for a, b in zip(self.machine0, psutil_cpu()))
        print(f"\n{phase}: {wall:.1f}s wall, {os.cpu_count()} CPUs, machine busy "
              f"{100 * busy / wall:.0f}% of one core (steal {100 * steal / wall:.0f}%); "
              f"CPU seconds by role (share of one core)")
        for role, t in sorted(cpu.items(), key=lambda kv: -kv[1]):
            d = t - self.cpu0.get(role, 0.0)
            print(f"  {role:<18}{d:>8.1f}s {100 * d / wall:>6.0f}%")
        rows = []
        for name, st in cmd.items():
            before = self.cmd0.get(name, {"calls": 0, "usec": 0})
            calls, usec = st["calls"] - before["calls"], st["usec"] - before["usec"]
            if calls:
                rows.append((usec, calls, name.removeprefix("cmdstat_")))
        rows.sort(reverse=True)
        print(f"  redis: {sum(u for u, _, _ in rows) / 1e6:.2f}s in commands; top by time:")
        for usec, calls, name in rows[:6]:
            print(f"    {name:<16}{calls:>8} calls {usec / 1e6:>7.2f}s {usec / calls:>9.0f} us/call")
        worst = sorted(self.quiet.when[self.q0:], key=lambda x: -x[1])[:5]
        print("  slowest whoami (s into the phase: ms): " + ", ".join(
            f"{t - self.pc0:.2f}: {ms:.0f}" for t, ms in sorted(worst)))
        if slow:
            worst = sorted(slow, key=lambda e: -e["duration"])[:3]
            print(f"  slowlog (>10 ms): {len(slow)} entries; worst: " + ", ".join(
                f"{e['duration'] / 1000:.0f} ms {(e['command'] or b'')[:24]!r}" for e in worst))


def _stats(ms: list[float]) -> tuple[float, float]:
    return percentile(ms, 50), percentile(ms, 99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="each phase's length")
    ap.add_argument("--profile", action="store_true",
                    help="per phase: CPU seconds per process role and Redis time per command")
    ap.add_argument("--noisy-cpus", default="", metavar="LIST",
                    help="pin the noisy client to these CPUs (e.g. 1) and all else to the rest")
    ap.add_argument("--attack", choices=["both", "polls", "submits"], default="both",
                    help="what the noisy tenant does (default both)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="a FUNCX_* setting for the service, e.g. WEB_THREADS=32 (repeatable)")
    a = ap.parse_args()
    # the other benchmarks turn the fair-share throttles off to measure the fabric;
    # this one measures them, so the service runs with their defaults
    for name in ("FUNCX_RATE_LIMIT_TASKS", "FUNCX_SUBMIT_CONCURRENCY_PER_IDENTITY"):
        fabric.BENCH_ENV.pop(name, None)
    for item in a.set:
        name, _, value = item.partition("=")
        fabric.BENCH_ENV[f"FUNCX_{name.removeprefix('FUNCX_')}"] = value
    noisy_cpus = {int(c) for c in a.noisy_cpus.split(",") if c.strip()}
    if noisy_cpus:  # before the service starts: its processes inherit the rest
        rest = os.sched_getaffinity(0) - noisy_cpus
        if not rest:
            ap.error("--noisy-cpus leaves no CPU for the service")
        os.sched_setaffinity(0, rest)
        log(f"noisy client on CPUs {sorted(noisy_cpus)}; service and quiet tenant on {sorted(rest)}")
    with Fabric() as fab:
        from backend import admin
        from backend.embedded import EmbeddedRedis
        from backend.redis_conn import connect
        from backend.supervisor import logs_dir
        from funcx.home import service_dir

        url = fab.fxc.web_client.base_url
        r = connect(EmbeddedRedis(service_dir() / "redis", logs_dir() / "redis.log").url)
        token = fab.fxc.web_client.token
        noisy_user = admin.add_user(r, f"noisy-{uuid.uuid4().hex[:6]}")
        quiet = Quiet(url, token, fab.eid, fab.fid)
        for _ in range(20):  # warm up
            quiet.whoami()
        quiet.run()
        prof = Profile(r, fab.sup_pid, list(fab.started.values())) if a.profile else None
        log(f"idle phase: {a.seconds:.0f}s")
        if prof:
            prof.start(quiet)
        idle_calls, idle_runs = quiet.measure(a.seconds)
        if prof:
            prof.report("idle")
        ctx = multiprocessing.get_context("spawn")
        stop, ready, out = ctx.Event(), ctx.Event(), ctx.Queue()
        proc = ctx.Process(target=_noisy_main,
                           args=(url, noisy_user["token"], stop, ready, out, noisy_cpus or None,
                                 a.attack))
        proc.start()
        ready.wait(120)
        time.sleep(3)  # let the attack reach full strength
        log(f"attack phase: {a.seconds:.0f}s")
        if prof:
            prof.noisy_pid = proc.pid
            prof.start(quiet)
        hot_calls, hot_runs = quiet.measure(a.seconds)
        if prof:
            prof.report("attack")
        stop.set()
        counts = out.get(timeout=180)
        proc.join(30)
        from funcx.defaults import setting

        print(f"\nnoisy neighbour, attack: {a.attack}, noisy client CPUs: "
              f"{sorted(noisy_cpus) or 'any'} (web: {setting('WEB_WORKERS')} workers x "
              f"{setting('WEB_THREADS')} threads; long-polls per identity "
              f"{setting('LONGPOLL_PER_IDENTITY')}, per process {setting('WEB_LONGPOLL_THREADS')})")
        print(f"{'quiet tenant':<26}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}")
        rows = [("whoami, idle", idle_calls), ("whoami, under attack", hot_calls),
                ("submit+result, idle", idle_runs), ("submit+result, attack", hot_runs)]
        for name, ms in rows:
            p50, p99 = _stats(ms)
            print(f"{name:<26}{len(ms):>6}{p50:>10.1f}{p99:>10.1f}")
        for kind, idle, hot in (("whoami", idle_calls, hot_calls),
                                ("submit+result", idle_runs, hot_runs)):
            (i50, i99), (h50, h99) = _stats(idle), _stats(hot)
            print(f"{kind}: attack/idle p50 {h50 / i50:.2f}x, p99 {h99 / i99:.2f}x")
        print("noisy tenant's answers: " + ", ".join(f"{k}: {v}" for k, v in
                                                     sorted(counts.items())))


if __name__ == "__main__":
    main()
