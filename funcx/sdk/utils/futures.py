"""funcX 0.0.1a5 ``funcx.sdk.utils.futures.FuncXFuture(client, task_id, ping_interval)``:
a future of one task already submitted with ``FuncXClient.run``.

0.0.1a5 polled the service every ``ping_interval`` seconds; here the future
waits on the task group's pushed completions (``FuncXClient.wait``), so
``ping_interval`` has no meaning: it is accepted and warned about once.
For new code, ``FuncXExecutor`` gives futures without a thread per task.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
import warnings
from typing import Any

from funcx.errors import FuncxError, TaskPending, ThrottlingException

_warned = threading.Event()


class FuncXFuture(cf.Future):
    """Completes when task ``task_id`` (of ``client``) finishes."""

    def __init__(self, client: Any, task_id: str, ping_interval: float | None = None):
        super().__init__()
        if ping_interval is not None and not _warned.is_set():
            _warned.set()
            warnings.warn("funcx.sdk.utils.futures.FuncXFuture: ping_interval is accepted and "
                          "ignored (results are pushed to the waiting future, not polled)",
                          UserWarning, stacklevel=2)
        self.client = client
        self.task_id = task_id
        self._status = "waiting-for-ep"
        threading.Thread(target=self._wait, daemon=True, name=f"funcx-future-{task_id}").start()

    def _wait(self) -> None:
        while not self.done():
            try:
                self.client.wait([self.task_id], timeout=60)
                result = self.client.get_result(self.task_id)
            except TaskPending as e:
                self._status = str(e)
                continue
            except ThrottlingException:  # the client's own request budget: wait it out
                threading.Event().wait(getattr(getattr(self.client, "throttle", None),
                                               "period", 10.0))
                continue
            except FuncxError as e:  # the service refused: the future fails with it
                self._settle(exc=e)
                return
            except Exception as e:  # noqa: BLE001 - the function's own exception
                self._settle(exc=e)
                return
            self._settle(result=result)
            return

    def _settle(self, result: Any = None, exc: BaseException | None = None) -> None:
        if not self.set_running_or_notify_cancel():
            return
        self._status = "failed" if exc is not None else "success"
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(result)

    def running(self) -> bool:
        """True while the task runs on its endpoint."""
        if self.done():
            return False
        try:
            return self.client.get_task(self.task_id).get("status") == "running"
        except FuncxError:
            return False

    def cancel(self) -> bool:
        """Stop the task, queued or running (its endpoint kills the worker
        running it); False once it has finished."""
        if self.done():
            return self.cancelled()
        try:
            if not self.client.cancel_task(self.task_id):
                return False
        except FuncxError:
            return False
        return super().cancel()
