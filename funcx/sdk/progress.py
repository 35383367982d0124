"""Progress of one task group (pure logic, no widget, no terminal): its tasks,
counts by status and by function, failures grouped by their error, elapsed
time and an ETA.  The ``funcx task watch`` table, the notebook
``TaskMonitor`` and ``%funcx status GROUP`` all show this.

Only :meth:`GroupProgress.reload`, :meth:`GroupProgress.follow`,
:meth:`GroupProgress.load_new`, :meth:`GroupProgress.load_errors` and
:meth:`GroupProgress.resolve_names` talk to the service, never while holding
the progress's ``lock`` (which a display holds while it reads, so a slow
request never freezes it); everything else folds rows in and reads them
out, so it is testable on plain dicts.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from funcx.protocol.failure_text import error_line
from funcx.protocol.states import TERMINAL_VALUES

#: tasks of a group loaded at once (``GET /v2/tasks`` limit)
GROUP_TASKS_LIMIT = 10_000
#: failed tasks whose errors are fetched one by one when no event told them
ERRORS_LOADED_MAX = 200


def _epoch(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def format_seconds(seconds: float | None) -> str:
    """``42 s``, ``3:07``, ``1:02:05``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


@dataclass(frozen=True)
class FunctionProgress:
    """One function's tasks in the group: one progress bar."""

    function_id: str
    name: str
    total: int
    done: int
    counts: dict[str, int]

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)


@dataclass(frozen=True)
class FailureGroup:
    """Failed tasks that share one error (type and message)."""

    error: str
    count: int
    sample_task_id: str
    function: str


@dataclass
class GroupProgress:
    """Summary rows of a group's tasks, by task id, folded from the service's
    task list and its pushed completion events."""

    rows: dict[str, dict] = field(default_factory=dict)  # task id -> summary row
    names: dict[str, str] = field(default_factory=dict)  # function id -> function name
    #: held while rows are folded in; a reader on another thread holds it too
    lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)

    @classmethod
    def of(cls, client: Any, task_group_id: str) -> GroupProgress:
        """The group's progress as the service has it now (one request)."""
        progress = cls()
        progress.reload(client, task_group_id)
        return progress

    def reload(self, client: Any, task_group_id: str) -> None:
        """Fold in the group's task list from the service."""
        self.load(client.list_tasks(task_group_id=task_group_id, limit=GROUP_TASKS_LIMIT))

    def load(self, rows: list[dict]) -> None:
        """Fold in summary rows (``FuncXClient.list_tasks``); what pushed
        documents told us already (an error, a completion time) is kept."""
        with self.lock:
            self._load(rows)

    def _load(self, rows: list[dict]) -> None:
        for r in rows:
            row = self.rows.setdefault(r["task_id"], {})
            known_terminal = row.get("status") in TERMINAL_VALUES
            for k, v in r.items():
                if v is None or (k == "status" and known_terminal):
                    continue
                row[k] = v
            if row.get("error_type") and not row.get("error"):  # a listing's own error column
                row["error"] = str(row["error_type"])

    def apply(self, docs: list[dict]) -> list[str]:
        """Fold in task documents pushed by the service; return the ids of
        tasks not seen before (their function is not known until a reload)."""
        with self.lock:
            return self._apply(docs)

    def _apply(self, docs: list[dict]) -> list[str]:
        new = []
        for d in docs:
            if d["task_id"] not in self.rows:
                new.append(d["task_id"])
            row = self.rows.setdefault(d["task_id"], {"task_id": d["task_id"]})
            row["status"] = d.get("status", row.get("status"))
            if d.get("completion_t"):
                row["completion_t"] = d["completion_t"]
            if row["status"] == "failed":
                row["error"] = error_line(d.get("exception") or d.get("reason"))
            for k in ("function_id", "endpoint_id", "created_at"):
                if d.get(k) and not row.get(k):
                    row[k] = d[k]
        return new

    def follow(self, client: Any, task_group_id: str) -> Iterator[GroupProgress]:
        """Yield this progress each time completions are pushed (long-poll),
        forever; stop iterating when done (see :attr:`all_done`).  The first
        answer holds every completion so far (with the failures' errors)."""
        for docs in client.watch_task_group(task_group_id):
            new = self.apply(docs)
            if new:  # tasks added since the last listing: learn their functions
                self.load_new(client, task_group_id, new)
            yield self

    def load_new(self, client: Any, task_group_id: str, new: list[str]) -> None:
        """Fold in the listing rows of tasks first seen in pushed documents.
        They were added to the group after the last listing, so they are its
        newest: the listing's last rows, fetched in growing pages until all
        are found (not the whole group, up to :data:`GROUP_TASKS_LIMIT` rows,
        for each new task)."""
        want = set(new)
        limit = max(50, 2 * len(want))
        while True:
            rows = client.list_tasks(task_group_id=task_group_id,
                                     limit=min(limit, GROUP_TASKS_LIMIT))
            self.load(rows)
            if want <= {r["task_id"] for r in rows} or len(rows) < limit \
                    or limit >= GROUP_TASKS_LIMIT:
                return
            limit *= 4

    def load_errors(self, client: Any, most: int = ERRORS_LOADED_MAX) -> None:
        """Fetch the errors of failed tasks whose error is not known (a group
        listed after it finished: its completion events may be gone); past
        ``most`` of them, the rest say so instead of being fetched."""
        from funcx.sdk.render import error_summary

        with self.lock:
            missing = [t for t, r in self.rows.items()
                       if r.get("status") == "failed" and not r.get("error")]
        fetched = client.get_batch_result(missing[:most]) if missing[:most] else {}
        with self.lock:
            for tid, st in fetched.items():
                exc = st.get("exception")
                self.rows[tid]["error"] = error_summary(exc) if exc is not None else \
                    error_line(st.get("reason"))
            for tid in missing[most:]:
                self.rows[tid]["error"] = "(error not loaded: see funcx task result)"

    def resolve_names(self, client: Any) -> None:
        """Look up the names of functions not named yet (one request each;
        a function you may not read keeps its short id)."""
        with self.lock:
            todo = {r.get("function_id") for r in self.rows.values()} - set(self.names)
        for fid in todo:
            if not fid:
                continue
            try:
                name = client.get_function(fid).get("function_name") or fid[:8]
            except Exception:  # noqa: BLE001 - any failure: show the id instead
                name = fid[:8]
            with self.lock:
                self.names[fid] = name

    # ------------------------------------------------------------ read out
    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def done(self) -> int:
        return sum(r.get("status") in TERMINAL_VALUES for r in self.rows.values())

    @property
    def finished(self) -> bool:
        """At least one task, and every task terminal (a monitor keeps
        watching a group that has no tasks yet)."""
        return self.total > 0 and self.done == self.total

    @property
    def all_done(self) -> bool:
        """Every known task terminal (true of a group with no tasks: nothing to wait for)."""
        return self.done == self.total

    @property
    def errors_known(self) -> bool:
        """Every failed task's error is known (a listing alone does not carry it)."""
        return all(r.get("error") for r in self.rows.values() if r.get("status") == "failed")

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.get("status", "unknown") for r in self.rows.values()))

    def summary(self) -> dict[str, int]:
        """``{"total", "done", <status>: count, ...}``."""
        return {"total": self.total, "done": self.done, **self.counts()}

    def function_name(self, function_id: str | None) -> str:
        """The function's name where known, else its short id (``?`` if none)."""
        if not function_id:
            return "?"
        return self.names.get(function_id) or function_id[:8]

    def by_function(self) -> list[FunctionProgress]:
        """One entry per function, by name."""
        groups: dict[str, list[dict]] = {}
        for r in self.rows.values():
            groups.setdefault(r.get("function_id") or "", []).append(r)
        out = []
        for fid, rows in groups.items():
            counts = dict(Counter(r.get("status", "unknown") for r in rows))
            out.append(FunctionProgress(
                function_id=fid, name=self.function_name(fid), total=len(rows),
                done=sum(r.get("status") in TERMINAL_VALUES for r in rows), counts=counts))
        return sorted(out, key=lambda f: (f.name, f.function_id))

    def failures(self) -> list[FailureGroup]:
        """Failed tasks grouped by error text, the commonest first, each with
        a sample task id to look at (``funcx task result ID``)."""
        groups: dict[str, list[dict]] = {}
        for r in self.rows.values():
            if r.get("status") == "failed":
                groups.setdefault(r.get("error") or "(error not loaded yet)", []).append(r)
        out = [FailureGroup(error=err, count=len(rows), sample_task_id=rows[0]["task_id"],
                            function=self.function_name(rows[0].get("function_id")))
               for err, rows in groups.items()]
        return sorted(out, key=lambda g: (-g.count, g.error))

    def started(self) -> float | None:
        """When the group's first task was submitted (epoch seconds), if known."""
        times = [t for t in (_epoch(r.get("created_at")) for r in self.rows.values())
                 if t is not None]
        return min(times) if times else None

    def ended(self) -> float | None:
        """When the group's last task finished, once all have."""
        if not self.finished:
            return None
        times = [t for t in (_epoch(r.get("completion_t")) for r in self.rows.values())
                 if t is not None]
        return max(times) if times else None

    def elapsed(self, now: float | None = None) -> float | None:
        """Seconds from the first submit to the last completion (or to ``now``)."""
        start = self.started()
        if start is None:
            return None
        end = self.ended() or (time.time() if now is None else now)
        return max(0.0, end - start)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds until every task is done, at the rate they have finished so
        far; 0 once finished; None before the first one finishes."""
        if self.finished:
            return 0.0
        elapsed = self.elapsed(now)
        if not self.done or not elapsed:
            return None
        return (self.total - self.done) * elapsed / self.done

    def latest(self, n: int = 10) -> list[dict]:
        """The ``n`` most recently finished (or created) tasks, newest first."""
        def key(r: dict) -> float:
            return float(r.get("completion_t") or r.get("created_at") or 0)

        return sorted(self.rows.values(), key=key, reverse=True)[:n]

    def duration(self, row: dict) -> float | None:
        """A finished task's run time on its worker where the service lists
        it (``exec_start``/``exec_end``), else its time from submit to completion."""
        start, end = _epoch(row.get("exec_start")), _epoch(row.get("exec_end"))
        if start is None or end is None:
            start, end = _epoch(row.get("created_at")), _epoch(row.get("completion_t"))
        return None if start is None or end is None else max(0.0, end - start)

    def describe(self, now: float | None = None) -> str:
        """The state as plain text: a line per function, the failures, the
        time (what a notebook saved without its kernel shows)."""
        head = f"{self.done}/{self.total} done"
        elapsed = self.elapsed(now)
        if elapsed is not None:
            head += f" in {format_seconds(elapsed)}" if self.finished else \
                f", elapsed {format_seconds(elapsed)}, ETA {format_seconds(self.eta(now))}"
        lines = [head]
        for f in self.by_function():
            extra = ", ".join(f"{v} {k}" for k, v in sorted(f.counts.items()))
            lines.append(f"  {f.name}: {f.done}/{f.total} ({extra})")
        for g in self.failures():
            lines.append(f"  {g.count} × {g.error}  (e.g. task {g.sample_task_id})")
        return "\n".join(lines)
