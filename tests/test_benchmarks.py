"""The benchmark suite runs end to end: ``python -m benchmarks run --quick``
starts its own service, endpoints and peer clusters, exits 0 and prints the
table with a row for funcX and each peer.  Its numbers are not asserted."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 350  # under 6 minutes (the quick run takes 1-2.5 min), with time left to stop it cleanly
PEERS = ("funcX", "multiprocessing.Pool", "Parsl HTEX", "Dask distributed", "Ray")
SCALING_PEERS = ("funcX", "Parsl HTEX", "Dask distributed", "Ray")


def block(out: str, figure_prefix: str) -> str:
    """The table rows of one figure (they run until the next blank line)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(figure_prefix))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return "\n".join(lines[start:end])


@pytest.mark.slow
@pytest.mark.timeout(LIMIT_S + 90)
def test_quick_benchmark_suite_runs():
    # the suite makes its own FUNCX_HOME: none of this test session's settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
    env["PYTHONIOENCODING"] = "utf-8"
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks", "run", "--quick"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            encoding="utf-8")
    try:
        out, err = proc.communicate(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # it stops everything it started, then exits
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"--quick took more than {LIMIT_S}s\n{err[-3000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-2000:]}\n{err[-4000:]}"
    for header in ("figure", "system", "median", "min–max", "unit", "funcX / peer",
                   "load avg", "versions"):
        assert header in out, f"{header!r} missing from\n{out}"
    for prefix in ("1 throughput", "2 round trip p50", "2 round trip p99", "3 1 MiB",
                   "4 start"):
        rows = block(out, prefix)
        for peer in PEERS:
            assert peer in rows, f"no {peer} row in figure {prefix!r}:\n{rows}"
    for prefix in ("5 batch_run", "6 service memory", "7 CLI", "8 scaling: task count"):
        assert block(out, prefix).count("\n") >= 1, f"figure {prefix!r} has too few rows"
    assert "funcx --help" in block(out, "7 CLI")
    # the new figures: scaling at each worker count (here 1,2) for funcX and the
    # peers, aggregate over 1 and 2 endpoints, 1 and 10 MiB arrays
    for prefix in ("8 scaling: 1 worker (", "8 scaling: 2 workers (", "10 large payload: 1 MiB",
                   "10 large payload: 10 MiB"):
        rows = block(out, prefix)
        for peer in SCALING_PEERS:
            assert peer in rows, f"no {peer} row in figure {prefix!r}:\n{rows}"
    for prefix in ("8 scaling: 1 worker (", "10 large payload: 10 MiB"):
        assert "n/a" not in _row(block(out, prefix), "funcX"), block(out, prefix)
    aggregate = block(out, "9 aggregate")
    for row in ("funcX, 1 endpoint (1 client process)", "funcX, 2 endpoints (2 client processes)"):
        assert row in aggregate and "n/a" not in _row(aggregate, row), aggregate
    assert "FUNCX_WEB_WORKERS" in aggregate and "FUNCX_INGESTERS" in aggregate
    assert "funcX / Parsl" in block(out, "8 scaling: 2 workers (")


def _row(rows: str, system: str) -> str:
    return next(line for line in rows.splitlines() if system in line)
