"""Latency from a task's completion on a worker to its future being done in
the submitting program (the result push path), for funcX's FuncXExecutor
beside Parsl HTEX, Dask and Ray, in the same run.

Each task returns ``time.time()`` as its last act; a done-callback stamps the
moment its future completes (one machine, one clock).

    python -m benchmarks.push_latency [--tasks 200]
"""
from __future__ import annotations

import argparse
import threading
import time

from benchmarks.harness import Table, guard, loadavg, percentile


def stamp(_=None):
    import time

    return time.time()


def measure(submit, n: int) -> list[float]:
    """ms from the task's end to its future's done-callback, one task at a time."""
    out = []
    for _ in range(n):
        done, seen = threading.Event(), {}
        fut = submit()
        fut.add_done_callback(lambda f, seen=seen, done=done: (seen.setdefault("t", time.time()),
                                                               done.set()))
        if not done.wait(60):
            raise TimeoutError("a task did not complete within 60 s")
        out.append((seen["t"] - fut.result()) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200)
    a = ap.parse_args()
    from benchmarks.fabric import Fabric
    from benchmarks.peers import DaskPeer, ParslPeer, RayPeer

    table = Table()
    fig = f"task end → future done ({a.tasks} tasks)"
    load = loadavg()

    def add(system: str, lat: list[float], ref: bool = False) -> None:
        table.add(fig + " p50", system, [percentile(lat, 50)], "ms", ref=ref)
        table.add(fig + " p99", system, [percentile(lat, 99)], "ms", ref=ref)

    def run_funcx() -> None:
        with Fabric() as fx:
            fx.ex.submit(stamp).result()
            add("funcX (FuncXExecutor, via service)", measure(lambda: fx.ex.submit(stamp), a.tasks),
                ref=True)

    def run_parsl() -> None:
        with ParslPeer() as p:
            p.htex.submit(stamp, {}).result()
            add(p.name, measure(lambda: p.htex.submit(stamp, {}), a.tasks))

    def run_dask() -> None:
        with DaskPeer() as p:
            p.client.submit(stamp, pure=False).result()
            add(p.name, measure(lambda: p.client.submit(stamp, pure=False), a.tasks))

    def run_ray() -> None:
        with RayPeer() as p:
            import ray

            remote = ray.remote(stamp)
            ray.get(remote.remote())
            add(p.name, measure(lambda: remote.remote().future(), a.tasks))

    for system, fn, ref in (("funcX (FuncXExecutor, via service)", run_funcx, True),
                            ("Parsl HTEX (direct)", run_parsl, False),
                            ("Dask distributed", run_dask, False), ("Ray", run_ray, False)):
        guard(table, [fig + " p50", fig + " p99"], system, fn, ref=ref)
    print(f"load average at start {load}, at end {loadavg()}")
    print(table.render())


if __name__ == "__main__":
    main()
