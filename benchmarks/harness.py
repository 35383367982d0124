"""Timing, statistics and the results table shared by the benchmark suite.

A :class:`Table` collects :class:`Row` s, one per (figure, system); each
figure has one funcX reference row, and every peer row of that figure gets a
``funcX / peer`` ratio of medians.  A system that could not run a figure gets
a row reading ``n/a (reason)`` instead of a number.
"""
from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata


def log(msg: str) -> None:
    """Progress on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank."""
    vals = sorted(values)
    if not vals:
        raise ValueError("no values")
    rank = max(0, min(len(vals) - 1, math.ceil(q / 100 * len(vals)) - 1))
    return vals[rank]


def latencies_ms(call: Callable[[int], object], count: int) -> list[float]:
    """Milliseconds of ``count`` sequential calls ``call(i)``."""
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def fmt(v: float) -> str:
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


@dataclass
class Row:
    figure: str
    system: str
    values: list[float] = field(default_factory=list)
    unit: str = ""
    note: str = ""
    ref: bool = False  # the funcX row the figure's ratios divide by

    @property
    def median(self) -> float:
        return statistics.median(self.values)


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, figure: str, system: str, values: Iterable[float], unit: str,
            note: str = "", ref: bool = False) -> Row:
        row = Row(figure, system, [float(v) for v in values], unit, note, ref)
        self.rows.append(row)
        return row

    def na(self, figure: str, system: str, reason: str, ref: bool = False) -> Row:
        reason = " ".join(str(reason).split())[:90]
        row = Row(figure, system, [], "", f"n/a ({reason})", ref)
        self.rows.append(row)
        return row

    def figures(self) -> list[str]:
        seen: list[str] = []
        for r in self.rows:
            if r.figure not in seen:
                seen.append(r.figure)
        # by figure number ("7 CLI ..."), which need not be the order they ran in
        return sorted(seen, key=lambda f: int(f.split()[0]) if f.split()[0].isdigit() else 99)

    def ratio(self, row: Row) -> str:
        if not row.values or row.ref:
            return ""
        ref = next((r for r in self.rows if r.figure == row.figure and r.ref), None)
        if ref is None or not ref.values or row.median == 0:
            return ""
        return f"{ref.median / row.median:.2f}"

    def render(self) -> str:
        head = ("figure", "system", "median", "min–max", "unit", "funcX / peer", "note")
        body = []
        for fig in self.figures():
            rows = sorted((r for r in self.rows if r.figure == fig), key=lambda r: not r.ref)
            for i, r in enumerate(rows):
                if r.values:
                    med, span = fmt(r.median), f"{fmt(min(r.values))}–{fmt(max(r.values))}"
                else:
                    med, span = "n/a", ""
                body.append((fig if i == 0 else "", r.system, med, span, r.unit,
                             "(ref)" if r.ref and r.values else self.ratio(r), r.note))
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
                  for i, h in enumerate(head)]
        right = {2, 3, 5}

        def line(cells) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        out = [line(head), "  ".join("-" * w for w in widths)]
        prev = None
        for b in body:
            if b[0] and prev is not None:
                out.append("")
            out.append(line(b))
            prev = b
        return "\n".join(out)


def guard(table: Table, figures: str | list[str], system: str, fn: Callable[[], object],
          ref: bool = False) -> bool:
    """Run ``fn`` (which adds its own rows); if it fails, add an n/a row for
    each of ``figures`` that it did not fill in."""
    figures = [figures] if isinstance(figures, str) else figures
    try:
        fn()
        return True
    except Exception as e:  # a peer that cannot run must not sink the suite
        log(f"{system} / {figures[0]} failed: {type(e).__name__}: {e}")
        if os.environ.get("BENCH_DEBUG"):
            traceback.print_exc()
        done = {(r.figure, r.system) for r in table.rows}
        for fig in figures:
            if (fig, system) not in done:
                table.na(fig, system, f"{type(e).__name__}: {e}", ref=ref)
        return False


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine_header(load_at_start: str, mode: str, repeat: int) -> str:
    import psutil

    dists = ("funcx-selfhosted", "parsl", "dask", "distributed", "ray")
    return "\n".join([
        f"funcX benchmarks ({mode}, {repeat} repeats; median and min–max over repeats)",
        f"date      {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"machine   {cpu_model()}; {os.cpu_count()} logical cores "
        f"({psutil.cpu_count(logical=False)} physical); "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB RAM; {platform.platform()}",
        f"python    {sys.version.split()[0]} ({sys.executable})",
        "versions  " + ", ".join(f"{d} {_version(d)}" for d in dists),
        f"load avg  1/5/15 min: at start {load_at_start}; at end {loadavg()} "
        f"(other jobs on this machine compete for its {os.cpu_count()} cores)",
        "ratio     funcX median / peer median: for tasks/s above 1 means funcX is faster; "
        "for ms, s and MiB below 1 means funcX is faster",
    ])


def private_redis(directory: str):
    """A throwaway redis-server (the embedded binary) on a free loopback port
    with a random password, nothing persisted; (process, url) once it answers."""
    import secrets
    import subprocess

    import redis

    from backend.embedded import free_port, redis_server_binary

    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", directory, "--save", "",
                             "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            return proc, url
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("the private redis-server did not start") from None
            time.sleep(0.05)
