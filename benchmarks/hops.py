"""Where a single task's round trip goes: a per-hop profile.

    python -m benchmarks.hops [--tasks 200] [--mib 0,1]

Starts the suite's fabric (service, one endpoint with 2 workers), then runs
``--tasks`` sequential round trips (``FuncXExecutor.submit(...).result()``)
of a no-op (``--mib 0``) and of an identity function on a random byte
array of each other size in MiB.  Every Redis command is recorded with
Redis's own clock through ``MONITOR`` (the one host's clock, which the SDK
and the worker share), and each task's round trip is cut at the points
where it touches Redis or the worker:

====================  =====================================================
hop                   from → to
====================  =====================================================
submit                ``submit()`` called → the task entry is in the
                      endpoint's task stream (executor hand-off, HTTP,
                      web auth and checks, the submit script)
to worker             task stream → the worker starts the function (agent
                      read, interchange, manager, worker, deserialization)
run                   the function's own run (``exec_start`` → ``exec_end``)
from worker           the function returns → the result entry is in the
                      results stream (serialization, worker → manager →
                      interchange → agent writer)
ingest                results stream → the result is in the task record
                      (the ingester's read, decode and apply script)
to future             task record → the future is done (task-group event,
                      the long poll's wake-up and answer, SDK decoding)
====================  =====================================================

``MONITOR`` costs Redis time (it echoes every command, payloads included),
so the profile's total is printed beside the same round trip measured
without it; the hops say where time goes, the plain figure what it is.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from benchmarks.fabric import RESULT_TIMEOUT_S, Fabric
from benchmarks.harness import log, percentile

HOPS = ("submit", "to worker", "run", "from worker", "ingest", "to future")


def identity(x):
    return x


class Monitor:
    """Every Redis command (time, text) while running; ``stop()`` ends it."""

    STOP = "funcx-hops-monitor-stop"

    def __init__(self, r) -> None:
        self.r = r
        self.lines: list[tuple[float, str]] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("MONITOR did not start")

    def _run(self) -> None:
        with self.r.monitor() as m:
            self.ready.set()
            for cmd in m.listen():
                text = cmd.get("command", "")
                if self.STOP in text:
                    return
                # payloads make lines long; what identifies a hop is near the front
                self.lines.append((float(cmd["time"]), text[:600]))

    def stop(self) -> None:
        self.r.echo(self.STOP)
        self.thread.join(30)


def _first(lines: list[tuple[float, str]], tid: str, *needles: str) -> float | None:
    for t, text in lines:
        if tid in text and all(n in text for n in needles):
            return t
    return None


def cut(lines: list[tuple[float, str]], tid: str, eid: str, t0: float, t_done: float,
        record: dict) -> dict[str, float] | None:
    """One task's hops in ms, or None where a point is missing."""
    import json

    from funcx.protocol import keys

    details = json.loads(record.get("details") or "{}")
    points = [t0,
              _first(lines, tid, "XADD", keys.ep_tasks(eid)),
              details.get("exec_start"), details.get("exec_end"),
              # the result entry, not the "running" status update that also names it
              _first(lines, tid, "XADD", keys.ep_results(eid), "kind result"),
              _first(lines, tid, "HSET", keys.task(tid), "status success"),
              t_done]
    if any(p is None for p in points):
        return None
    return {h: (b - a) * 1e3 for h, a, b in zip(HOPS, points, points[1:])}


def profile(fab: Fabric, fn, arg, n: int) -> tuple[dict[str, list[float]], list[float], list[float]]:
    """Hops of ``n`` monitored round trips, and ``n`` plain round-trip times (ms)."""
    from funcx.protocol import keys

    r = fab.redis()
    ex = fab.ex
    for _ in range(5):  # warm: function registered, connections open
        ex.submit(fn, arg).result(RESULT_TIMEOUT_S)
    plain = []
    for _ in range(n):
        t = time.perf_counter()
        ex.submit(fn, arg).result(RESULT_TIMEOUT_S)
        plain.append((time.perf_counter() - t) * 1e3)
    mon = Monitor(r)
    runs = []
    try:
        for _ in range(n):
            t0 = time.time()
            fut = ex.submit(fn, arg)
            fut.result(RESULT_TIMEOUT_S)
            runs.append((fut.task_id, t0, time.time()))
    finally:
        mon.stop()
    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    totals = []
    for tid, t0, t1 in runs:
        row = cut(mon.lines, tid, fab.eid, t0, t1, r.hgetall(keys.task(tid)))
        if row is None:
            continue
        for h, v in row.items():
            hops[h].append(v)
        totals.append((t1 - t0) * 1e3)
    return hops, totals, plain


def render(label: str, hops: dict[str, list[float]], totals: list[float],
           plain: list[float]) -> str:
    out = [f"\n{label}: {len(totals)} round trips profiled",
           f"{'hop':<14} {'p50 ms':>8} {'p99 ms':>8} {'share of p50 sum':>17}"]
    p50s = {h: statistics.median(v) if v else float('nan') for h, v in hops.items()}
    whole = sum(p50s.values())
    for h in HOPS:
        v = hops[h]
        if not v:
            out.append(f"{h:<14} {'n/a':>8}")
            continue
        out.append(f"{h:<14} {p50s[h]:8.2f} {percentile(v, 99):8.2f} {p50s[h] / whole:16.0%}")
    if totals:
        out.append(f"{'total (MONITOR on)':<20} p50 {statistics.median(totals):.2f} ms, "
                   f"p99 {percentile(totals, 99):.2f} ms")
    out.append(f"{'total (MONITOR off)':<20} p50 {statistics.median(plain):.2f} ms, "
               f"p99 {percentile(plain, 99):.2f} ms")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hops", description=__doc__.split("\n")[0],
                                 epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=200, help="round trips per size (default 200)")
    ap.add_argument("--mib", default="0,1",
                    help="comma list of argument sizes in MiB; 0 is a no-op (default 0,1)")
    a = ap.parse_args(argv)
    try:
        sizes = [float(x) for x in a.mib.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--mib takes numbers, e.g. 0,1,10; got {a.mib!r}")
    import numpy as np

    from benchmarks.peers import noop

    with Fabric() as fab:
        for mib in sizes:
            if mib == 0:
                fn, arg, label = noop, 1, "no-op"
            else:
                fn = identity
                arg = np.frombuffer(np.random.bytes(int(mib * 2**20)), dtype=np.uint8)
                label = f"{mib:g} MiB array, identity"
            n = a.tasks if mib < 10 else max(3, a.tasks // 20)
            log(f"hops: {label}, {n} round trips")
            print(render(label, *profile(fab, fn, arg, n)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
