"""Task states and the transitions between them (pure logic)."""
from __future__ import annotations

from enum import Enum


class TaskState(str, Enum):
    RECEIVED = "received"
    WAITING_FOR_EP = "waiting-for-ep"
    WAITING_FOR_NODES = "waiting-for-nodes"
    WAITING_FOR_LAUNCH = "waiting-for-launch"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:  # so f-strings and JSON show the wire value
        return self.value


TERMINAL = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.CANCELLED})
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)
_ORDER = {s: i for i, s in enumerate(TaskState)}


def is_terminal(status: str) -> bool:
    return status in TERMINAL_VALUES


def may_transition(current: str | None, new: str) -> bool:
    """Whether a task in ``current`` may move to ``new``.

    Terminal states never change (the first terminal result stands); a
    non-terminal state only moves forward, so a late "running" report cannot
    overwrite "success".
    """
    if current is None:
        return True
    if is_terminal(current):
        return False
    if is_terminal(new):
        return True
    return _ORDER[TaskState(new)] > _ORDER[TaskState(current)]
