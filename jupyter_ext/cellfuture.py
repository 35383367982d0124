"""The future of a ``%%funcx --no-wait`` cell.

It shows its task id at once, and its result is what the cell would have
shown: the value of its last expression, or with ``--out a,b`` a dict of
those variables (which also land in the notebook's namespace when the task
finishes, as a blocking ``%%funcx --out`` would put them there).  What the
cell printed is on ``.stdout`` / ``.stderr`` and in its HTML display.
"""
from __future__ import annotations

import concurrent.futures as cf
from typing import Any

from funcx.sdk.render import captured, error_text


class CellFuture(cf.Future):
    """A ``%%funcx --no-wait`` cell running on an endpoint (see the module's doc)."""

    def __init__(self, inner: Any, outputs: list[str], namespace: dict[str, Any]):
        super().__init__()
        self.inner, self.outputs, self._namespace = inner, list(outputs), namespace
        self.stdout = self.stderr = ""
        inner.add_done_callback(self._inner_done)

    @property
    def task_id(self) -> str | None:
        return self.inner.task_id

    def cancel(self) -> bool:
        """Cancel the cell's task, queued or running (its endpoint kills the
        worker running it); False once it has finished."""
        return self.inner.cancel() and super().cancel()

    def _inner_done(self, inner: Any) -> None:
        from jupyter_ext.magics import RemoteError

        if inner.cancelled():
            super().cancel()
            return
        if not self.set_running_or_notify_cancel():
            return
        exc = inner.exception()
        if exc is not None:
            error = RemoteError(error_text(exc), exc)  # (it carries over what the cell printed)
            self.stdout, self.stderr = captured(exc, "stdout"), captured(exc, "stderr")
            self.set_exception(error)
            return
        out = inner.result()
        self.stdout, self.stderr = out.get("stdout", ""), out.get("stderr", "")
        if self.outputs:
            self._namespace.update(out["outputs"])
            self.set_result(dict(out["outputs"]))
        else:
            self.set_result(out["value"])

    def _status(self) -> str:
        if self.cancelled():
            return "cancelled"
        if not self.done():
            return "pending"
        return "failed" if self.exception() is not None else "success"

    def __repr__(self) -> str:
        return f"<CellFuture task_id={self.task_id} state={self._status()}>"

    def _repr_html_(self) -> str:
        from funcx.sdk.reprs import task_html

        status = self._status()
        exc = self.exception() if status == "failed" else None
        original = getattr(exc, "original", None) or exc
        return task_html("%%funcx cell", self.task_id, status,
                         self.result() if status == "success" else None, original,
                         done=status in ("success", "failed"),
                         output=self.stdout + self.stderr)
