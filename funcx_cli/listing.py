"""What ``funcx task list`` and ``funcx task watch`` show, as pure logic over
the service's task rows (``GET /v2/tasks``): durations, names instead of ids,
counts per state and failures grouped by their error."""
from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass
from typing import Any

from funcx.protocol.states import TERMINAL_VALUES

#: the state words in the order ``funcx task watch`` counts them
STATE_ORDER = ("received", "waiting-for-ep", "waiting-for-nodes", "waiting-for-launch",
               "running", "success", "failed", "cancelled")


def epoch(value: Any) -> float | None:
    """An epoch (number or numeric string), or None."""
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def duration(seconds: float | None) -> str:
    """``0.4s``, ``42s``, ``3m07s``, ``1h02m``, ``2d03h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{s:.0f}s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def clock(value: Any, now: float) -> str:
    """A submit time: ``HH:MM:SS`` today, ``YYYY-MM-DD HH:MM`` before."""
    t = epoch(value)
    if t is None:
        return "-"
    when = datetime.datetime.fromtimestamp(t)
    today = datetime.datetime.fromtimestamp(now).date()
    return when.strftime("%H:%M:%S") if when.date() == today else when.strftime("%Y-%m-%d %H:%M")


def queued_s(row: dict, now: float) -> float | None:
    """Seconds from submit until a worker started it (until now while it waits)."""
    created, started = epoch(row.get("created_at")), epoch(row.get("exec_start"))
    if created is None:
        return None
    if started is not None:
        return started - created
    if row.get("status") in TERMINAL_VALUES:
        return None  # finished without a worker's start time (cancelled, lost)
    if row.get("status") == "running":
        return None
    return now - created


def run_s(row: dict) -> float | None:
    """Seconds the function ran (its worker's start to end)."""
    start, end = epoch(row.get("exec_start")), epoch(row.get("exec_end"))
    return None if start is None or end is None else end - start


@dataclass(frozen=True)
class Names:
    """Function and endpoint names by id (unknown ids show as short ids)."""

    functions: dict[str, str]
    endpoints: dict[str, str]

    def function(self, fid: str | None) -> str:
        return self.functions.get(fid or "") or (fid or "?")[:8]

    def endpoint(self, eid: str | None) -> str:
        return self.endpoints.get(eid or "") or (eid or "?")[:8]


def display_row(row: dict, names: Names, now: float, short: int = 8) -> dict[str, str]:
    """One ``funcx task list`` line, as text (the JSON output keeps the raw row)."""
    return {"id": row["task_id"][:short], "function": names.function(row.get("function_id")),
            "endpoint": names.endpoint(row.get("endpoint_id")), "state": row.get("status", "?"),
            "submitted": clock(row.get("created_at"), now),
            "queued": duration(queued_s(row, now)), "run": duration(run_s(row)),
            "error": str(row.get("error_type") or "")}


def unique_prefix_length(ids: list[str], least: int = 8) -> int:
    """The shortest length >= ``least`` at which every id of ``ids`` is distinct."""
    n = least
    while n < 36 and len({i[:n] for i in ids}) < len(set(ids)):
        n += 1
    return n


@dataclass(frozen=True)
class WatchSummary:
    """A task group at a glance: counts per state and failures by error."""

    total: int
    counts: dict[str, int]
    failures: list[tuple[str, int, str]]  # (error, count, a sample task id), commonest first

    @property
    def done(self) -> int:
        return sum(n for s, n in self.counts.items() if s in TERMINAL_VALUES)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0) + self.counts.get("cancelled", 0)

    def headline(self) -> str:
        """``400/400 done: 389 success, 11 failed``."""
        parts = [f"{self.counts[s]} {s}" for s in ordered_states(self.counts)]
        return f"{self.done}/{self.total} done" + (": " + ", ".join(parts) if parts else "")


def ordered_states(counts: dict[str, int]) -> list[str]:
    """The states present in ``counts``, in task-lifecycle order."""
    known = [s for s in STATE_ORDER if counts.get(s)]
    return known + sorted(s for s in counts if s not in STATE_ORDER and counts[s])


def summarize(rows: list[dict]) -> WatchSummary:
    """Counts per state and failures grouped by error line, from task rows
    whose failed ones carry ``error`` (the listing does)."""
    counts = Counter(str(r.get("status", "unknown")) for r in rows)
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r.get("status") in ("failed", "cancelled"):
            err = str(r.get("error") or r.get("error_type") or r.get("status"))
            groups.setdefault(err, []).append(r["task_id"])
    failures = sorted(((e, len(t), t[0]) for e, t in groups.items()), key=lambda g: (-g[1], g[0]))
    return WatchSummary(total=len(rows), counts=dict(counts), failures=failures)
