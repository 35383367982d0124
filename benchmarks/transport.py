"""What transport security costs: the same funcX fabric run twice in one
process, once in clear on loopback and once as it runs across hosts —
HTTPS to the web service, Redis over TLS for the endpoint (Debian's
TLS-capable redis-server on the TLS port), CurveZMQ to managers (on in both
runs: it is never off) — with the service bound to this host's routable
address, so every byte takes the path it takes between hosts.

    python -m benchmarks.transport [--tasks 2000] [--rtts 200] [--repeat 3]

Prints tasks/s (batch_run + wait, no-ops, 2 workers) and round-trip p50/p99
for each, and the ratio TLS / clear.  Needs a non-loopback address and a
TLS-capable redis-server (``apt install redis-server``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from benchmarks.core import noop
from benchmarks.fabric import BENCH_ENV


def run(host: str, tls: bool, tasks: int, repeat: int, rtts: int) -> dict:
    """Start a service on ``host`` (with ``tls-init``'s certificates when
    ``tls``) and an endpoint with 2 workers; measure; stop everything."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("FUNCX_")}
    for k in saved:
        del os.environ[k]
    home = tempfile.mkdtemp(prefix="funcx-bench-tls-")
    os.environ.update(BENCH_ENV, FUNCX_HOME=home)
    from backend import control
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir
    from funcx import FuncXClient

    if tls:
        from backend.tls import init_tls

        files = init_tls([host])
        os.environ["FUNCX_CA_BUNDLE"] = str(files.ca)  # the SDK and the agent trust it
    url = control.start_detached(host=host, port=0)
    try:
        assert url.startswith("https://" if tls else "http://"), url
        ep = EndpointDir("bench")
        write_template(ep.config_file, "bench", workers=2)
        eid = daemon.start("bench")
        fxc = FuncXClient()
        fxc.throttling_enabled = False
        fid = fxc.register_function(noop)
        fxc.wait([fxc.run(endpoint_id=eid, function_id=fid)], timeout=120)  # warm up
        assert fxc.get_endpoint_status(eid)["status"] == "online"  # its Redis link is up
        rates = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            batch = fxc.create_batch()
            for i in range(tasks):
                batch.add(i, endpoint_id=eid, function_id=fid)
            ids = fxc.batch_run(batch)
            docs = fxc.wait(ids, timeout=600)
            rates.append(tasks / (time.perf_counter() - t0))
            assert [docs[t]["result"] for t in ids] == list(range(tasks))
            fxc.func_table.clear()
        lat = []
        for i in range(rtts):
            t0 = time.perf_counter()
            tid = fxc.run(i, endpoint_id=eid, function_id=fid)
            fxc.wait([tid], timeout=60)
            lat.append((time.perf_counter() - t0) * 1000)
            assert fxc.get_result(tid) == i
        return {"url": url, "rates": rates, "lat": sorted(lat)}
    finally:
        try:
            daemon.stop("bench")
        finally:
            control.stop()
            for k in [k for k in os.environ if k.startswith("FUNCX_")]:
                del os.environ[k]
            os.environ.update(saved)
            shutil.rmtree(home, ignore_errors=True)


def _p(lat: list[float], q: float) -> float:
    return lat[min(len(lat) - 1, int(len(lat) * q))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.transport", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--rtts", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    from backend.tls import TransportRefused, is_loopback, routable_address, tls_redis_server

    try:
        host = routable_address()
        tls_redis_server()
    except (OSError, TransportRefused) as e:
        print(f"cannot measure TLS here: {e}", file=sys.stderr)
        return 2
    if is_loopback(host):
        print("cannot measure TLS here: no non-loopback address", file=sys.stderr)
        return 2
    runs = {"clear, loopback (http, redis, CurveZMQ)": run("127.0.0.1", False, a.tasks, a.repeat,
                                                            a.rtts),
            f"TLS on {host} (https, rediss, CurveZMQ)": run(host, True, a.tasks, a.repeat, a.rtts)}
    print(f"\n{a.tasks:,} no-ops per batch (median of {a.repeat}), {a.rtts} round trips, "
          "2 workers, same machine, same run")
    print(f"{'transport':45s} {'tasks/s':>10s} {'rtt p50 ms':>11s} {'rtt p99 ms':>11s}")
    rows = []
    for name, d in runs.items():
        rate, p50, p99 = statistics.median(d["rates"]), _p(d["lat"], 0.5), _p(d["lat"], 0.99)
        rows.append((rate, p50, p99))
        print(f"{name:45s} {rate:>10,.0f} {p50:>11.2f} {p99:>11.2f}")
    (r0, a0, b0), (r1, a1, b1) = rows
    print(f"{'TLS / clear':45s} {r1 / r0:>10.2f} {a1 / a0:>11.2f} {b1 / b0:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
