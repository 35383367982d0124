"""A manager's results sent to the interchange and not yet acknowledged
(issue 15): numbered in the order sent, kept for a resend after a reconnect
until a heartbeat's ``acked`` count covers them, and found by task id (a
task the interchange sends again is answered with its kept result rather
than run twice; :mod:`endpoint.manager`).

One entry per task: a newer result of a task (a re-run) replaces the older,
so a lookup is one dict access instead of a walk over every kept result on
each TASKS message."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

from funcx.protocol.messages import Result

#: results kept for a resend until acknowledged (beyond: the oldest are let go)
MAX_UNACKED = 100_000


class Unacked:
    """Sent results by task id, oldest first; iterates ``(number, result)``."""

    def __init__(self, limit: int = MAX_UNACKED) -> None:
        self.limit = limit
        self._kept: OrderedDict[str, tuple[int, Result]] = OrderedDict()

    def add(self, number: int, result: Result) -> int:
        """Keep ``result``, sent as the ``number``-th; the count of the oldest
        let go because more than ``limit`` are kept (0 normally)."""
        kept = self._kept
        kept.pop(result.task_id, None)
        kept[result.task_id] = (number, result)
        over = len(kept) - self.limit
        for _ in range(max(0, over)):
            kept.popitem(last=False)
        return max(0, over)

    def acknowledged(self, count: int) -> None:
        """The interchange received the first ``count`` results sent: forget them."""
        kept = self._kept
        while kept:
            tid, (number, _) = next(iter(kept.items()))
            if number > count:
                break
            del kept[tid]

    def get(self, task_id: str) -> Result | None:
        """The kept result of ``task_id``, if any."""
        entry = self._kept.get(task_id)
        return entry[1] if entry is not None else None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._kept

    def __iter__(self) -> Iterator[tuple[int, Result]]:
        return iter(list(self._kept.values()))

    def __len__(self) -> int:
        return len(self._kept)

    def __bool__(self) -> bool:
        return bool(self._kept)

    def clear(self) -> None:
        self._kept.clear()
