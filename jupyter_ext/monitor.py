"""The state behind the task monitor, apart from any widget (pure logic):
tasks of a group, counts by status, the latest finished ones."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from funcx.protocol.states import TERMINAL_VALUES


@dataclass
class GroupProgress:
    rows: dict[str, dict] = field(default_factory=dict)  # task id -> summary row

    def load(self, rows: list[dict]) -> None:
        for r in rows:
            self.rows[r["task_id"]] = dict(r)

    def apply(self, docs: list[dict]) -> None:
        """Fold in task documents pushed by the service."""
        for d in docs:
            row = self.rows.setdefault(d["task_id"], {"task_id": d["task_id"]})
            row["status"] = d.get("status", row.get("status"))
            if d.get("completion_t"):
                row["completion_t"] = d["completion_t"]

    @property
    def total(self) -> int:
        return len(self.rows)

    @property
    def done(self) -> int:
        return sum(r.get("status") in TERMINAL_VALUES for r in self.rows.values())

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.done == self.total

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.get("status", "unknown") for r in self.rows.values()))

    def latest(self, n: int = 10) -> list[dict]:
        def key(r):
            return float(r.get("completion_t") or r.get("created_at") or 0)

        return sorted(self.rows.values(), key=key, reverse=True)[:n]
