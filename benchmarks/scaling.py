"""Figure 8, scaling: tasks/s of N no-ops at each worker count
(``--workers``), for funcX (one endpoint with that many workers, through
FuncXExecutor) and for Parsl HTEX, Dask and Ray restarted with that many
workers; and funcX's tasks/s for growing task counts at 2 workers.

Each worker count is its own figure in the table, so the ratio column reads
funcX / peer at that count, and the funcX row's note gives funcX / Parsl.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from benchmarks import harness as h

PARSL = "Parsl HTEX"


def figure(workers: int, tasks: int) -> str:
    """The table's figure name of one worker count."""
    return f"8 scaling: {workers} worker{'' if workers == 1 else 's'} ({tasks:,} no-ops)"


def rates(run_n: Callable[[int], list], n: int, repeat: int) -> list[float]:
    """``repeat`` samples of tasks/s of ``run_n(n)`` after a warm-up; every
    run must return each result in order (checked after its clock stops)."""
    _check(run_n(min(n, 200)), min(n, 200))  # warm up
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        got = run_n(n)
        out.append(n / (time.perf_counter() - t0))
        _check(got, n)
    return out


def _check(got: list, n: int) -> None:
    if list(got) != list(range(n)):
        raise AssertionError(f"wrong results from {n} no-ops")


def measure(table: h.Table, system: str, run_n: Callable[[int], list], workers: int,
            n: int, repeat: int, ref: bool = False) -> None:
    """One row: ``system``'s tasks/s at ``workers`` workers (n/a on failure)."""
    fig = figure(workers, n)
    h.guard(table, fig, system, lambda: table.add(fig, system, rates(run_n, n, repeat),
                                                  "tasks/s", ref=ref), ref=ref)


def annotate(table: h.Table, counts: list[int], n: int) -> None:
    """Note on each count's funcX row: µs per task and funcX / Parsl at that
    count (once every system has run)."""
    for w in counts:
        rows = [r for r in table.rows if r.figure == figure(w, n) and r.values]
        fx = next((r for r in rows if r.ref), None)
        parsl = next((r for r in rows if r.system.startswith(PARSL)), None)
        if fx is None:
            continue
        notes = [f"{1e6 / statistics.median(fx.values):,.0f} µs/task"]
        if parsl is not None:
            notes.append(f"funcX / Parsl {fx.median / parsl.median:.2f}")
        fx.note = "; ".join(notes)
