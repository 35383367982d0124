"""Task states and the transitions between them (pure logic).

What each state means (the words of the public funcX / Globus Compute SDKs,
which treat every state but ``success`` and ``failed`` as pending):

``received``
    the service has it (a moment, inside a submit).
``waiting-for-ep``
    queued at the service: its endpoint has not taken it yet.  Also what a
    reader is shown for any unfinished task while its endpoint is offline
    (:func:`shown_status`; ``details.endpoint_status`` is ``"offline"`` and
    ``details.last_status`` the state it had reached): it waits for the
    endpoint to come back, which runs it again if it had started.
``waiting-for-nodes``
    the endpoint has it and no worker to run it on: no manager has
    registered yet (blocks being provisioned, or failing: the endpoint's
    problems are in the task's ``details.problems``).
``waiting-for-launch``
    the endpoint has workers and the task waits for one: queued behind busy
    workers (at the interchange or on a manager), or sent to a manager and
    about to start.
``running``
    a worker runs it.
``success`` / ``failed`` / ``cancelled``
    terminal; ``cancelled`` from any other state (a running task's worker is
    killed by its endpoint).
"""
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


#: what a reader is shown for an unfinished task while its endpoint is offline
OFFLINE_SHOWN = TaskState.WAITING_FOR_EP.value


def shown_status(stored: str, endpoint_online: bool) -> str:
    """The state a reader is shown for a task in state ``stored``: as stored,
    except that an unfinished task of an offline endpoint waits for its
    endpoint (it never shows ``running`` on a stopped endpoint).  Read-time
    only: the stored state is left as it is, for when the endpoint returns."""
    if endpoint_online or is_terminal(stored):
        return stored
    return OFFLINE_SHOWN
