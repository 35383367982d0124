"""Pure scheduling decisions of the interchange: which manager gets which
task, and what happens to the tasks of a lost manager."""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from funcx.errors import ManagerLost
from funcx.protocol.messages import Result, Task


@dataclass
class ManagerState:
    manager_id: bytes
    block_id: str
    hostname: str
    workers: int
    credits: int
    last_heard: float
    tasks: dict[str, Task] = field(default_factory=dict)
    containers: tuple[str, ...] = ("",)  # containers its workers run now ("": none): warm
    accepts_containers: bool = True  # it can start a worker in any container
    pid: int = 0

    def serves(self, task: Task) -> bool:
        return (not task.container_id or self.accepts_containers
                or task.container_id in self.containers)


def assign(pending: deque[Task], managers: list[ManagerState]) -> dict[bytes, list[Task]]:
    """Hand pending tasks to managers with credits, in arrival order, spreading
    across managers; tasks that no manager can serve stay pending."""
    out: dict[bytes, list[Task]] = {}
    credit = {m.manager_id: m.credits for m in managers}
    skipped: deque[Task] = deque()
    while pending and any(credit.values()):
        task = pending.popleft()
        best = None
        for m in managers:
            if credit[m.manager_id] > 0 and m.serves(task):
                # warm container match first, then the most free credits
                key = (task.container_id in m.containers and bool(task.container_id),
                       credit[m.manager_id])
                if best is None or key > best[0]:
                    best = (key, m)
        if best is None:
            skipped.append(task)
            continue
        mid = best[1].manager_id
        out.setdefault(mid, []).append(task)
        credit[mid] -= 1
    pending.extendleft(reversed(skipped))
    return out


def lost_manager_tasks(manager: ManagerState, max_retries: int, now: float | None = None
                       ) -> tuple[list[Task], list[Result]]:
    """Tasks of a lost manager to re-dispatch, and failures for those out of
    retries (``max_retries``: the endpoint's max_retries_on_system_failure);
    each loss is recorded in the task's attempts (endpoint.retries)."""
    from endpoint.execute import failure
    from endpoint.retries import attempt_record, finish, record

    retry, failed = [], []
    name = manager.manager_id.decode(errors="replace")
    for task in manager.tasks.values():
        task.attempt += 1
        if task.attempt > max_retries:
            result = failure(task, ManagerLost(name, task.attempt))
            if task.attempts or task.retry_policy:
                finish(task, result, name)
            failed.append(result)
        else:
            record(task, attempt_record(
                task, None, name, error_type="ManagerLost",
                message=f"the manager {name} went silent and was declared lost", end=now))
            retry.append(task)
    return retry, failed


@dataclass
class SlotView:
    """What the manager's worker choice needs to know about one worker."""

    index: int
    container: str  # the container it runs in ("" = none)
    ready: bool  # started and asked for work
    busy: bool


def pick_worker(container: str, slots: list[SlotView]) -> tuple[str, int | None]:
    """Where a task for ``container`` goes: ("send", i) to an idle worker of that
    container; ("respawn", i) to restart an idle worker of another container
    into it; ("wait", None) when one is starting or all are busy."""
    idle = [s for s in slots if s.ready and not s.busy]
    for s in idle:
        if s.container == container:
            return "send", s.index
    if any(s.container == container and not s.ready for s in slots):
        return "wait", None  # a worker of this container is starting
    if idle:
        return "respawn", idle[0].index
    return "wait", None


def task_walltime(spec: object, default: float | None, bound: float | None) -> float | None:
    """The walltime (s) a task runs under: what its resource specification asks
    when that is a positive finite number, else ``default``; never above the
    owner's ``bound``.  None: unlimited.  Never raises, whatever ``spec`` holds."""
    asked = spec.get("walltime") if isinstance(spec, dict) else None
    ok = (isinstance(asked, (int, float)) and not isinstance(asked, bool)
          and 0 < asked < float("inf"))
    walltime = asked if ok else default
    if bound is not None and (walltime is None or walltime > bound):
        return bound
    return walltime
