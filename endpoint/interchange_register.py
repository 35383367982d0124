"""Reconciling a manager's registration with the interchange's bookkeeping
(part of :class:`endpoint.interchange_state.InterchangeState`, kept apart
because it is one coherent decision): what a (re-)registering manager says it
holds is kept, re-attached, refused or awaited, as the state module's
docstring describes under "Links that come back".  Pure: no sockets, no clock.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from endpoint.interchange_events import ManagerRegistered, Registered, SendCancel
from endpoint.scheduling import ManagerState
from funcx.protocol.messages import Task

if TYPE_CHECKING:
    from endpoint.interchange_state import InterchangeState


def forget_holds(st: InterchangeState, mid: bytes) -> None:
    """Drop what ``mid`` said it held and we did not book to it."""
    for table in (st.awaiting, st.refused):
        for tid in [t for t, owner in table.items() if owner == mid]:
            del table[tid]


def reconcile(st: InterchangeState, ev: ManagerRegistered) -> list:
    """A manager registers, or registers again after a reconnect: reconcile
    what it holds with what we booked (see :mod:`endpoint.interchange_state`)."""
    mid, h = ev.mid, ev.header
    held = list(dict.fromkeys(h.held))
    held_set = set(held)
    m = st.managers.get(mid)
    again = m is not None
    requeued: list[str] = []
    if m is None:
        m = ManagerState(mid, h.block_id, h.hostname, h.workers, h.capacity, ev.now,
                         containers=tuple(h.containers), pid=h.pid)
        st.managers[mid] = m
    else:  # a reconnect shorter than our threshold: same bookkeeping, checked;
        # its capacity and workers stay as first registered (not raised at will)
        forget_holds(st, mid)
        lost = [t for tid, t in m.tasks.items() if tid not in held_set]
        for t in lost:  # never reached it (lost with the old connection)
            del m.tasks[t.task_id]
            requeued.append(t.task_id)
        st.pending.extendleft(reversed(lost))
        m.block_id, m.hostname, m.pid = h.block_id, h.hostname, h.pid
        m.containers = tuple(h.containers)
        m.last_heard = ev.now
    kept = [tid for tid in held if tid in m.tasks]
    wanted = held_set.difference(m.tasks)
    # cancelled while it was away: it is told to kill them, and gets their credit
    cancel_held = [tid for tid in held if tid in wanted and tid in st.cancelled]
    wanted.difference_update(cancel_held)
    reattached: list[str] = []
    refunded = 0
    def take_back(t: Task) -> None:
        nonlocal refunded
        wanted.discard(t.task_id)
        if st.lost_from.pop(t.task_id, None) == mid:
            t.attempt = max(0, t.attempt - 1)  # the cut cost no retry
            if t.attempts and t.attempts[-1].get("error_type") == "ManagerLost":
                t.attempts.pop()  # nor an attempt: it ran on
            refunded += 1
        m.tasks[t.task_id] = t
        reattached.append(t.task_id)

    if wanted and st.parked:
        for tid in [tid for tid in held if tid in wanted and tid in st.parked]:
            take_back(st.parked.pop(tid))
    if wanted and st.pending:
        rest: deque[Task] = deque()
        for t in st.pending:
            if t.task_id in wanted:
                take_back(t)
            else:
                rest.append(t)
        st.pending = rest
    refused: list[str] = []
    awaited: list[str] = []
    if wanted:
        elsewhere = {tid for other in st.managers.values() if other is not m
                     for tid in other.tasks if tid in wanted}
        for tid in held:
            if tid not in wanted:
                continue
            if tid in elsewhere or tid in st.done:
                st.refused[tid] = mid
                refused.append(tid)
            else:
                st.awaiting[tid] = mid
                awaited.append(tid)
    st.asked.pop(mid, None)
    capacity = st.capacity.setdefault(mid, h.capacity)
    m.credits = capacity - len(held) + len(cancel_held)  # what it holds uses its capacity
    st.received[mid] = h.results_base
    if h.hand_started:
        st.hand_started.add(mid)
    else:
        st.hand_started.discard(mid)
    out: list = [Registered(m, again, kept, reattached, refunded, refused, awaited, requeued)]
    if cancel_held:
        out.append(SendCancel(mid, cancel_held))
    return out
