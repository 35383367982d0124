"""``FuncXFuture``: the future of one funcX task (``FuncXExecutor.submit``'s answer)."""
from __future__ import annotations

import concurrent.futures as cf
import threading
from typing import TYPE_CHECKING, Any

from funcx.errors import FuncxError

if TYPE_CHECKING:
    from funcx.sdk.executor import FuncXExecutor


class FuncXFuture(cf.Future):
    """A future of one funcX task; ``task_id`` is set once the task is submitted.

    It stays pending until its result arrives, so ``cancel()`` works until the
    task finishes, running or not: a submitted task is cancelled on the service
    too (its endpoint kills the worker running it), and one whose submit is
    still in flight is cancelled on the service as soon as its id is known.
    """

    def __init__(self, task_id: str | None = None):
        super().__init__()
        self.task_id = task_id
        self._executor: FuncXExecutor | None = None
        self.submitted = threading.Event()  # set once task_id is known
        #: the name of the task's function (in a failed dependent's error), when known
        self.function_name: str | None = None
        #: the resource_specification it was submitted with (set by the executor)
        self._resource_specification: dict[str, Any] = {}
        #: each run of a task that had a retry policy or was retried (README "Retries")
        self.attempts: list[dict] | None = None
        if task_id:
            self.submitted.set()
        self._output: dict[str, str] = {}  # the task's stdout/stderr, set as it completes

    @property
    def stdout(self) -> str | None:
        """What the task wrote to stdout ("" when nothing; None until done)."""
        return self._output.get("stdout", "") if self.done() else None

    @property
    def stderr(self) -> str | None:
        """What the task wrote to stderr ("" when nothing; None until done)."""
        return self._output.get("stderr", "") if self.done() else None

    def cancel(self) -> bool:
        """Cancel the task, queued or running: the service cancels it (a running
        task's worker is killed by its endpoint) and this future ends cancelled
        (``result()`` raises ``CancelledError``); False once the task has
        finished.  Unlike a local ``concurrent.futures`` future, this one stays
        pending while its task runs remotely, so a running task can be stopped."""
        if self.done():
            return self.cancelled()
        if self.task_id is None and self._executor is not None:
            with self._executor._lock:  # _submitted sees it cancelled, or sets the id first
                if self.task_id is None:
                    return super().cancel()
        if self.task_id is not None and self._executor is not None:
            try:
                if not self._executor.client.cancel_task(self.task_id):
                    return False  # it finished first
            except FuncxError:
                return False
        return super().cancel()

    def _finish(self, result: Any = None, exc: BaseException | None = None) -> None:
        if not self.set_running_or_notify_cancel():
            return  # cancelled: its result is discarded
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(result)

    def __repr__(self) -> str:
        return f"<FuncXFuture task_id={self.task_id} state={self._state}>"

    def _repr_html_(self) -> str:
        from funcx.sdk.reprs import task_html

        if self.cancelled():
            return task_html("FuncXFuture", self.task_id, "cancelled")
        if not self.done():
            return task_html("FuncXFuture", self.task_id, "pending")
        exc = self.exception()
        return task_html("FuncXFuture", self.task_id, "failed" if exc else "success",
                         None if exc else self.result(), exc, done=True)
