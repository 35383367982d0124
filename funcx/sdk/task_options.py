"""``fxe.options(retries=3, retry_on=(OSError,))``: a view of a
``FuncXExecutor`` whose submissions carry other per-task options (after Ray's
``f.options(max_retries=...)``), so that options never take keyword
arguments away from the function itself."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from funcx.sdk.executor import FuncXExecutor, FuncXFuture


class TaskOptions:
    """Submits through ``executor`` (same endpoint, task group and connections)
    with ``retry_policy`` (funcx.protocol.retry) on each task."""

    def __init__(self, executor: FuncXExecutor, retry_policy: dict[str, Any]):
        self.executor = executor
        self.retry_policy = retry_policy

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> FuncXFuture:
        """As ``FuncXExecutor.submit``, with these options."""
        ex = self.executor
        if ex._shutdown:
            raise RuntimeError("cannot submit to a FuncXExecutor after shutdown")
        if not ex.endpoint_id:
            raise ValueError("FuncXExecutor.endpoint_id is not set")
        fid = ex.register_function(fn)
        return ex._submit(fid, args, kwargs, self.retry_policy,
                          getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None))

    def submit_to_registered_function(self, function_id: str, args: tuple | None = None,
                                      kwargs: dict | None = None) -> FuncXFuture:
        """As ``FuncXExecutor.submit_to_registered_function``, with these options."""
        return self.executor._submit(function_id, args, kwargs, self.retry_policy, None)

    def map(self, fn: Callable, *iterables: Iterable) -> Iterator[Any]:
        """Results of ``fn`` over ``iterables`` in order (tasks submitted at once)."""
        futures = [self.submit(fn, *xs) for xs in zip(*iterables)]
        return (f.result() for f in futures)

    def __repr__(self) -> str:
        return f"<TaskOptions {self.retry_policy or 'no retries'} of {self.executor!r}>"
