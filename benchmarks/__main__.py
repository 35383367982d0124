"""The benchmark suite: funcX beside Parsl HTEX, Dask, Ray and a
multiprocessing pool, all with 2 workers unless a figure says otherwise, in one run.

    python -m benchmarks run [--quick] [--only NAMES] [--repeat N] [--workers 1,2,4]
        [--endpoints 1,2,4] [--agg-workers W] [--agg-tasks N] [--payload-mib 1,10,100]

It starts a funcX service and endpoints itself (in a throwaway FUNCX_HOME),
runs each figure for funcX and for each peer, repeats it, and prints the
median, min–max and the ratio funcX / peer.  ``--quick`` runs the same code
on small sizes in about two minutes on 2 cores (CI proves the suite works; its
numbers mean little).  Figures (``--only`` takes a comma-separated subset):

  throughput  no-op tasks through the whole fabric, submit all + collect all
  roundtrip   one no-op, submit and wait for its result: p50 and p99
  payload     a 1 MiB bytes argument returned as the result: p50
  startup     start (endpoint daemon / cluster) to the first result
  batch       funcX batch_run + wait + get_batch_result beside the executor
  memory      Redis bytes per queued task and per result; service RSS
  cli         ``funcx --help`` start-up beside peer CLIs
  scaling     tasks/s of 10,000 no-ops at each --workers count for funcX (one
              endpoint with that many workers) and Parsl HTEX, Dask, Ray
              (restarted with that many); funcX for growing task counts
  aggregate   E endpoints (--endpoints) on the one service, one client process
              each, all at once: E*N / (last end - first start)
  large-payload  a 1, 10, 100 MiB numpy array (--payload-mib) to an identity
              task and back: funcX executor, Dask scatter+submit+gather, Ray
              put+remote+get, Parsl HTEX; p50
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import statistics
import sys
import time
from typing import Any

from benchmarks import aggregate as agg
from benchmarks import harness as h
from benchmarks import large_payload as lp
from benchmarks import options
from benchmarks import scaling as sc
from benchmarks.options import FIGURES, Plan
from benchmarks.peers import PEERS, Peer

FUNCX_FIGURES = set(FIGURES) - {"cli"}
PEER_FIGURES = {"throughput", "roundtrip", "payload", "startup", "scaling", "large-payload"}
SIZES: dict[str, dict[str, Any]] = {
    "quick": dict(tasks=500, rtt=20, payload=5, queued=1_000, results=1_000, rss=2_000,
                  counts=(200, 1_000, 2_000), cli_runs=2),
    "full": dict(tasks=10_000, rtt=200, payload=20, queued=10_000, results=10_000,
                 rss=100_000, counts=(1_000, 10_000, 100_000), cli_runs=10),
}
MIB = 1024 * 1024
FUNCX = "funcX (FuncXExecutor, via service)"


class Suite:
    def __init__(self, mode: str, repeat: int, only: set[str], plan: Plan):
        self.s, self.repeat, self.only, self.plan = SIZES[mode], repeat, only, plan
        self.quick = mode == "quick"
        # start-up samples: each costs a whole cluster start (Ray's alone takes
        # 10-20 s on a busy 2-core machine), so --quick takes one
        self.starts = 1 if mode == "quick" else repeat
        self.table = h.Table()
        s = self.s
        self.F = {
            "throughput": f"1 throughput, {s['tasks']:,} no-ops",
            "p50": f"2 round trip p50 ({s['rtt']} × 1 no-op)",
            "p99": f"2 round trip p99 ({s['rtt']} × 1 no-op)",
            "payload": f"3 1 MiB arg → result, p50 of {s['payload']}",
            "startup": "4 start → first result",
            "batch": f"5 batch_run {s['tasks']:,} + wait + get_batch_result",
            "memory": "6 service memory",
            "cli": f"7 CLI --help start-up ({s['cli_runs']} runs)",
            "counts": "8 scaling: task count (2 workers)",
        }

    def want(self, name: str) -> bool:
        return name in self.only

    # ------------------------------------------------- figures any system runs
    def throughput(self, system: str, run_n, ref: bool = False) -> None:
        n, fig = self.s["tasks"], self.F["throughput"]

        def go() -> None:
            run_n(min(n, 200))  # warm up
            rates = [n / h.timed(lambda: run_n(n)) for _ in range(self.repeat)]
            self.table.add(fig, system, rates, "tasks/s", ref=ref)

        h.guard(self.table, fig, system, go, ref=ref)

    def roundtrip(self, system: str, call, ref: bool = False) -> None:
        k, p50, p99 = self.s["rtt"], self.F["p50"], self.F["p99"]

        def go() -> None:
            if call(7) != 7:
                raise AssertionError("wrong result")
            lats = [h.latencies_ms(call, k) for _ in range(self.repeat)]
            self.table.add(p50, system, [h.percentile(x, 50) for x in lats], "ms", ref=ref)
            self.table.add(p99, system, [h.percentile(x, 99) for x in lats], "ms", ref=ref)

        h.guard(self.table, [p50, p99], system, go, ref=ref)

    def payload(self, system: str, call, ref: bool = False) -> None:
        blob, fig = os.urandom(MIB), self.F["payload"]

        def one(_i: int) -> None:
            if call(blob) != blob:
                raise AssertionError("the 1 MiB result differs from the argument")

        def go() -> None:
            one(0)
            p50s = [h.percentile(h.latencies_ms(one, self.s["payload"]), 50)
                    for _ in range(self.repeat)]
            self.table.add(fig, system, p50s, "ms", ref=ref)

        h.guard(self.table, fig, system, go, ref=ref)

    # ------------------------------------------------------------------ funcX
    def run_funcx(self) -> None:
        from benchmarks.fabric import Fabric

        figs = [f for f in FIGURES if f in FUNCX_FIGURES and self.want(f)]
        if not figs:
            return
        h.log("funcX: starting the service and an endpoint with 2 workers")
        try:
            with Fabric(large_mib=max(self.plan.payload_mib)) as fab:
                for f in figs:
                    h.log(f"funcX: {f}")
                    getattr(self, f"funcx_{f.replace('-', '_')}")(fab)
        except Exception as e:  # the fabric itself did not start (or stop)
            h.log(f"funcX fabric failed: {type(e).__name__}: {e}")
            done = {r.figure for r in self.table.rows if r.system.startswith("funcX")}
            for f in figs:
                for fig in self.names(f):
                    if fig not in done:
                        self.table.na(fig, FUNCX, f"{type(e).__name__}: {e}", ref=True)

    def funcx_throughput(self, fab) -> None:
        self.throughput(FUNCX, lambda n: fab.run_tasks(fab.ex, n), ref=True)

    def funcx_roundtrip(self, fab) -> None:
        self.roundtrip(FUNCX, fab.call, ref=True)

    def funcx_payload(self, fab) -> None:
        self.payload(FUNCX, fab.call, ref=True)

    def funcx_startup(self, fab) -> None:
        fig, name = self.F["startup"], "funcX (endpoint daemon.start)"
        h.guard(self.table, fig, name, lambda: self.table.add(
            fig, name, [fab.startup() for _ in range(self.starts)], "s", ref=True), ref=True)

    def funcx_batch(self, fab) -> None:
        fig, n = self.F["batch"], self.s["tasks"]

        def go() -> None:
            fab.batch(min(n, 200))  # warm up
            pairs = [(fab.batch(n), fab.throughput(n)) for _ in range(self.repeat)]
            self.table.add(fig, "funcX batch_run (FuncXClient)", [b for b, _ in pairs],
                           "tasks/s", ref=True)
            self.table.add(fig, "funcX FuncXExecutor (same run)", [e for _, e in pairs],
                           "tasks/s", note="ratio: batch_run / executor")

        h.guard(self.table, fig, "funcX batch_run (FuncXClient)", go, ref=True)

    def funcx_memory(self, fab) -> None:
        fig, s, sysname = self.F["memory"], self.s, "funcX service"
        t = self.table

        def go() -> None:
            t.add(fig, "Redis bytes / queued task", [fab.redis_per_queued(s["queued"])
                                                     for _ in range(self.repeat)], "B",
                  note=f"{s['queued']:,} no-ops to a stopped endpoint (INFO used_memory)")
            t.add(fig, "Redis bytes / finished task", [fab.redis_per_result(s["results"])
                                                       for _ in range(self.repeat)], "B",
                  note=f"{s['results']:,} no-ops run: record + result + event")
            (own0, red0), (own1, red1) = fab.rss_through(s["rss"])
            t.add(fig, "service RSS, before", [own0], "MiB",
                  note="supervisor + gunicorn master/workers + ingester + RQ worker")
            t.add(fig, f"service RSS, after {s['rss']:,} tasks", [own1], "MiB",
                  note=f"{own1 - own0:+.1f} MiB")
            t.add(fig, "redis-server RSS, before → after", [red1], "MiB",
                  note=f"before {red0:.1f} MiB; {red1 - red0:+.1f} MiB")

        h.guard(t, fig, sysname, go)

    def funcx_scaling(self, fab) -> None:
        t, n = self.table, self.plan.scaling_tasks
        for w in self.plan.workers:  # one endpoint with w workers; the peers run later
            def one(w: int = w) -> None:
                with fab.workers(w) as ex:
                    t.add(sc.figure(w, n), FUNCX,
                          sc.rates(lambda k: fab.run_tasks(ex, k), n, self.repeat), "tasks/s",
                          ref=True)

            h.guard(t, sc.figure(w, n), FUNCX, one, ref=True)
        fig, base = self.F["counts"], None
        for n in self.s["counts"]:
            system = f"funcX, {n:,} tasks"

            def go(n=n, system=system) -> None:
                nonlocal base
                rates = fab.scaling(2, n, self.repeat)
                us = 1e6 / statistics.median(rates)
                base = base or us
                t.add(fig, system, rates, "tasks/s",
                      note=f"{us:,.0f} µs/task ({us / base:.2f}× the first row)")

            h.guard(t, fig, system, go)

    def funcx_aggregate(self, fab) -> None:
        p = self.plan
        agg.measure(self.table, fab, p.endpoints, p.agg_workers, p.agg_tasks, self.repeat,
                    fab.service_tier())

    def funcx_large_payload(self, fab) -> None:
        self.large_payload(FUNCX, fab.call_large, ref=True)

    def large_payload(self, system: str, call, ref: bool = False) -> None:
        lp.measure(self.table, system, call, self.plan.payload_mib,
                   lambda mib: self.plan.calls(mib, self.quick), self.repeat, ref=ref)

    # ------------------------------------------------------------------ peers
    def run_peers(self) -> None:
        if not self.only & PEER_FIGURES:
            return
        counts = self.plan.workers
        for cls in PEERS:
            peer = cls()  # 2 workers
            name = peer.name
            session = [f for f in ("throughput", "roundtrip", "payload") if self.want(f)]
            if self.want("startup"):
                session.append("startup")
            scaling = cls.scales and self.want("scaling")
            if scaling and 2 in counts:
                session.append("scaling")
            if cls.large and self.want("large-payload"):
                session.append("large-payload")
            if session:
                h.log(f"{name}: {', '.join(session)}")
                self.peer_session(peer, session)
            for w in counts if scaling else []:
                if w != 2:
                    h.log(f"{name}: scaling, {w} worker{'' if w == 1 else 's'}")
                    self.peer_scaling(cls, w)

    def peer_session(self, peer: Peer, session: list[str]) -> None:
        """One start of ``peer`` with 2 workers for every figure of ``session``;
        that start is the first start-up sample."""
        name, fig = peer.name, self.F["startup"]
        starts: list[float] = []
        try:
            peer.load()
            t0 = time.perf_counter()
            with peer:
                if peer.call(1) != 1:
                    raise AssertionError("wrong result")
                starts.append(time.perf_counter() - t0)
                for f in session:
                    if f in ("throughput", "roundtrip", "payload"):
                        getattr(self, f)(name, peer.map_noop if f == "throughput" else peer.call)
                    elif f == "scaling":
                        sc.measure(self.table, name, peer.map_noop, 2, self.plan.scaling_tasks,
                                   self.repeat)
                    elif f == "large-payload":
                        self.large_payload(name, peer.call_large)
        except Exception as e:
            h.log(f"{name} failed: {type(e).__name__}: {e}")
            figs = [x for f in session
                    for x in (self.names(f) if f != "scaling" else [sc.figure(2, self.plan.scaling_tasks)])]
            for x in figs:
                if not any(r.figure == x and r.system == name for r in self.table.rows) \
                        and (x != fig or not starts):
                    self.table.na(x, name, f"{type(e).__name__}: {e}")
        if "startup" in session and starts:
            cls = type(peer)
            h.guard(self.table, fig, name, lambda: self.table.add(
                fig, name, starts + [peer_startup(cls) for _ in range(self.starts - 1)], "s"))

    def peer_scaling(self, cls: type[Peer], workers: int) -> None:
        """The scaling row of peer ``cls`` started with ``workers`` workers."""
        n, peer = self.plan.scaling_tasks, cls(workers)

        def go() -> None:
            with peer:
                self.table.add(sc.figure(workers, n), peer.name,
                               sc.rates(peer.map_noop, n, self.repeat), "tasks/s")

        h.guard(self.table, sc.figure(workers, n), peer.name, go)

    def names(self, figure: str) -> list[str]:
        """The table's figure names of one ``--only`` name."""
        p = self.plan
        if figure == "scaling":
            return [sc.figure(w, p.scaling_tasks) for w in p.workers] + [self.F["counts"]]
        if figure == "aggregate":
            return [agg.figure(p.agg_workers, p.agg_tasks)]
        if figure == "large-payload":
            return [lp.figure(m, p.calls(m, self.quick)) for m in p.payload_mib]
        return [self.F[k] for k in {"roundtrip": ["p50", "p99"]}.get(figure, [figure])]

    # -------------------------------------------------------------------- cli
    def run_cli(self) -> None:
        if not self.want("cli"):
            return
        from benchmarks import cli_startup as cs

        fig = self.F["cli"]
        h.log("cli: funcx --help and peer CLIs")

        def go() -> None:
            cmds = cs.candidates(install=False)
            for tool in ("dask", "ray"):
                cmd = [str(cs.VENV_BIN / tool), "--help"]
                if cs.works(cmd):
                    cmds[f"{tool} --help"] = cmd
                else:
                    self.table.na(fig, f"{tool} --help", "does not exit 0")
            times = cs.measure(cmds, self.s["cli_runs"])
            for name, ms in times.items():
                self.table.add(fig, name, ms, "ms", ref=name == "funcx --help")

        h.guard(self.table, fig, "funcx --help", go, ref=True)


def peer_startup(cls: type[Peer]) -> float:
    """Seconds from creating the peer's cluster/executor to its first result."""
    peer = cls()
    peer.load()
    t0 = time.perf_counter()
    with peer:
        if peer.call(1) != 1:
            raise AssertionError("wrong result")
        return time.perf_counter() - t0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: a bad option exits 2 with a message naming
    it.  Adds ``only`` (figure names), ``mode``, ``repeats`` and ``plan``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the suite and print the table",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    run.add_argument("--only", default="", help=f"comma-separated subset of {','.join(FIGURES)}")
    run.add_argument("--repeat", type=int, default=None,
                     help="repeats of each figure (default 3; 2 with --quick)")
    options.add_arguments(run)
    a = ap.parse_args(argv)
    a.only = {x.strip() for x in a.only.split(",") if x.strip()} or set(FIGURES)
    if a.only - set(FIGURES):
        run.error(f"unknown figure(s) {', '.join(sorted(a.only - set(FIGURES)))} in --only; "
                  f"choose from {', '.join(FIGURES)}")
    a.mode = "quick" if a.quick else "full"
    a.repeats = max(1, a.repeat or (2 if a.quick else 3))
    a.plan = options.plan(a, quick=a.quick)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    # SIGTERM unwinds like Ctrl-C, so every service, endpoint and cluster is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # the table has – µ → × in it
    load0, t0 = h.loadavg(), time.perf_counter()
    suite = Suite(a.mode, a.repeats, a.only, a.plan)
    suite.run_funcx()
    suite.run_peers()
    suite.run_cli()
    sc.annotate(suite.table, suite.plan.workers, suite.plan.scaling_tasks)
    print(h.machine_header(load0, a.mode, a.repeats))
    print(f"took      {time.perf_counter() - t0:.0f} s\n")
    print(suite.table.render(), flush=True)
    return 0

if __name__ == "__main__":
    sys.exit(main())
