"""Figure 10, large payloads: a random uint8 numpy array of 1, 10, 100 MiB
sent as the argument of an identity task and returned; p50 over k calls.

funcX runs ``FuncXExecutor.submit(identity, arr).result()`` as a user would;
the peers use their own route for large data (``Peer.call_large``: Dask
scatter + submit + gather, Ray put + remote + get, Parsl HTEX the array
pickled in the task).  Every result is compared with what was sent; a wrong
result fails the row instead of being timed.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks import harness as h

MIB = 1024 * 1024


def figure(mib: int, calls: int) -> str:
    """The table's figure name of one size (its rows: funcX and each peer)."""
    return f"10 large payload: {mib:,} MiB numpy array arg → result, p50 of {calls}"


def make_array(mib: int, seed: int = 20) -> Any:
    """``mib`` MiB of random bytes as a uint8 numpy array (numpy imported here:
    only this figure needs it)."""
    import numpy as np

    return np.random.default_rng(seed + mib).integers(0, 256, size=mib * MIB, dtype=np.uint8)


def check(sent: Any, got: Any) -> None:
    """Raise unless ``got`` is an array equal to ``sent`` (dtype, shape, bytes)."""
    import numpy as np

    if not isinstance(got, np.ndarray):
        raise AssertionError(f"the result is a {type(got).__name__}, not the array sent")
    if got.dtype != sent.dtype or got.shape != sent.shape or not np.array_equal(got, sent):
        raise AssertionError("the result differs from the array sent")


def p50_ms(call: Callable[[Any], Any], arr: Any, calls: int) -> float:
    """Median milliseconds of ``calls`` round trips of ``arr``; each result is
    checked after its clock stops."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        got = call(arr)
        times.append((time.perf_counter() - t0) * 1000)
        check(arr, got)
        del got
    return h.percentile(times, 50)


def measure(table: h.Table, system: str, call: Callable[[Any], Any], sizes: list[int],
            calls_at: Callable[[int], int], repeat: int, ref: bool = False) -> None:
    """Add one row per size for ``system``: ``repeat`` p50s of ``calls_at(mib)``
    calls each, after one checked warm-up call; a size that fails gets an
    n/a row and the next size is still tried."""
    for mib in sizes:
        fig = figure(mib, calls_at(mib))

        def go(mib: int = mib, fig: str = fig) -> None:
            arr = make_array(mib)
            check(arr, call(arr))  # warm up, and a wrong result fails before any timing
            table.add(fig, system, [p50_ms(call, arr, calls_at(mib)) for _ in range(repeat)],
                      "ms", ref=ref)

        h.guard(table, fig, system, go, ref=ref)
