"""Core-fabric figures: 1,000 no-op tasks through ``batch_run`` +
``get_batch_result`` (tasks/s) and one round trip (ms), for funcX (service +
endpoint with 2 workers, all local) beside Parsl's HighThroughputExecutor
with 2 workers driven directly, in the same run.

    python -m benchmarks.core [--tasks 1000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time


def noop(x=None):
    return x


def run_funcx(tasks: int, repeat: int, rtts: int) -> dict:
    os.environ["FUNCX_HOME"] = tempfile.mkdtemp(prefix="funcx-bench-")
    from backend import control
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir
    from funcx import FuncXClient

    control.start_detached(port=0)
    try:
        ep = EndpointDir("bench")
        write_template(ep.config_file, "bench", workers=2)
        eid = daemon.start("bench")
        fxc = FuncXClient()
        fxc.throttling_enabled = False  # 100 sequential round trips: beyond the documented 20 / 10 s
        fid = fxc.register_function(noop)
        fxc.wait([fxc.run(endpoint_id=eid, function_id=fid)], timeout=60)  # warm up
        rates = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            batch = fxc.create_batch()
            for i in range(tasks):
                batch.add(i, endpoint_id=eid, function_id=fid)
            ids = fxc.batch_run(batch)
            fxc.wait(ids, timeout=600)
            res = fxc.get_batch_result(ids)
            elapsed = time.perf_counter() - t0
            assert [res[t]["result"] for t in ids] == list(range(tasks))
            fxc.func_table.clear()
            rates.append(tasks / elapsed)
        lat = []
        for i in range(rtts):
            t0 = time.perf_counter()
            tid = fxc.run(i, endpoint_id=eid, function_id=fid)
            fxc.wait([tid], timeout=60)
            assert fxc.get_result(tid) == i
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        daemon.stop("bench")  # also when a figure failed: no endpoint left running
        control.stop()
        shutil.rmtree(os.environ["FUNCX_HOME"], ignore_errors=True)
    return {"rates": rates, "lat": lat}


def run_parsl(tasks: int, repeat: int, rtts: int) -> dict:
    import sys

    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    # Parsl starts its interchange and workers as console scripts of this venv
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    run_dir = tempfile.mkdtemp(prefix="parsl-bench-")
    htex = HighThroughputExecutor(max_workers_per_node=2, provider=LocalProvider(init_blocks=1, max_blocks=1))
    dfk = parsl.load(Config(executors=[htex], run_dir=run_dir))
    try:
        htex.submit(noop, {}, 0).result()  # warm up
        rates = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            futs = [htex.submit(noop, {}, i) for i in range(tasks)]
            assert [f.result() for f in futs] == list(range(tasks))
            rates.append(tasks / (time.perf_counter() - t0))
        lat = []
        for i in range(rtts):
            t0 = time.perf_counter()
            assert htex.submit(noop, {}, i).result() == i
            lat.append((time.perf_counter() - t0) * 1000)
    finally:
        dfk.cleanup()
        parsl.clear()
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"rates": rates, "lat": lat}


def summary(rates: list[float], lat: list[float]) -> tuple[str, str]:
    lat = sorted(lat)
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return (f"{statistics.median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})",
            f"{p50:.1f} (p99 {p99:.1f})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rtts", type=int, default=100)
    a = ap.parse_args()
    fx = run_funcx(a.tasks, a.repeat, a.rtts)
    pa = run_parsl(a.tasks, a.repeat, a.rtts)
    print(f"\n{a.tasks} no-op tasks, 2 workers, median of {a.repeat} (min-max); round trip over {a.rtts}")
    print(f"{'system':55s} {'tasks/s':>22s} {'round trip ms':>20s}")
    for name, d in (("funcX (batch_run + get_batch_result via service)", fx),
                    ("Parsl HighThroughputExecutor, driven directly", pa)):
        rate, lat = summary(d["rates"], d["lat"])
        print(f"{name:55s} {rate:>22s} {lat:>20s}")


if __name__ == "__main__":
    main()
