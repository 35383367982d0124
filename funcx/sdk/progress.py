"""Progress of one task group (pure logic, no widget, no terminal): its tasks,
counts by status, the latest finished ones.  The ``funcx task watch`` table,
the notebook ``TaskMonitor`` and ``%funcx status GROUP`` all show this."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from funcx.protocol.states import TERMINAL_VALUES

#: tasks of a group loaded at once (``GET /v2/tasks`` limit)
GROUP_TASKS_LIMIT = 10_000


@dataclass
class GroupProgress:
    """Summary rows of a group's tasks, by task id, folded from the service's
    task list and its pushed completion events."""

    rows: dict[str, dict] = field(default_factory=dict)  # task id -> summary row

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
        """Fold in summary rows (``FuncXClient.list_tasks``)."""
        for r in rows:
            self.rows[r["task_id"]] = dict(r)

    def apply(self, docs: list[dict]) -> None:
        """Fold in task documents pushed by the service."""
        for d in docs:
            row = self.rows.setdefault(d["task_id"], {"task_id": d["task_id"]})
            row["status"] = d.get("status", row.get("status"))
            if d.get("completion_t"):
                row["completion_t"] = d["completion_t"]

    def follow(self, client: Any, task_group_id: str) -> Iterator[GroupProgress]:
        """Yield this progress each time completions are pushed (long-poll),
        forever; stop iterating when done (see :attr:`all_done`)."""
        for docs in client.watch_task_group(task_group_id):
            self.apply(docs)
            yield self

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

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.get("status", "unknown") for r in self.rows.values()))

    def summary(self) -> dict[str, int]:
        """``{"total", "done", <status>: count, ...}``."""
        return {"total": self.total, "done": self.done, **self.counts()}

    def latest(self, n: int = 10) -> list[dict]:
        """The ``n`` most recently finished (or created) tasks, newest first."""
        def key(r: dict) -> float:
            return float(r.get("completion_t") or r.get("created_at") or 0)

        return sorted(self.rows.values(), key=key, reverse=True)[:n]
