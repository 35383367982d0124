"""Futures as arguments: ``fxe.submit(g, fxe.submit(f, 1))`` runs ``g`` on
``f``'s result, without blocking the caller (Dask, Ray and Parsl do the same).

Resolution happens here, in the submitting process: the executor holds a
dependent task until every future among its arguments is done, then
serializes the results in their place and submits it.  The service and the
endpoint never see a dependency, which keeps them simple and keeps the
service's distrust of payloads (it would otherwise have to read results to
put them into arguments); the price is that the submitting process must stay
up until its dependents are submitted (``shutdown(wait=True)`` waits for them).

Futures are found in the positional and keyword arguments and inside lists,
tuples, sets and dict values nested in them (at most :data:`MAX_DEPTH` deep).
Any ``concurrent.futures.Future`` counts: another executor's, another
client's, or one the caller completes by hand.  A dependency that fails fails
its dependents with :class:`DependencyFailed` (naming its task id, function
and error), which are never submitted; one that is cancelled cancels them.
"""
from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import Any

from funcx.errors import DependencyFailed

__all__ = ["DependencyFailed", "Held", "find_futures", "substitute"]

#: how deep futures are looked for inside nested containers
MAX_DEPTH = 16


def find_futures(args: tuple, kwargs: dict) -> list[cf.Future]:
    """The distinct futures among ``args`` and ``kwargs`` (nested too), in order."""
    found: dict[int, cf.Future] = {}

    def walk(obj: Any, depth: int) -> None:
        if isinstance(obj, cf.Future):
            found.setdefault(id(obj), obj)
        elif depth < MAX_DEPTH:
            if isinstance(obj, (list, tuple, set, frozenset)):
                for x in obj:
                    walk(x, depth + 1)
            elif isinstance(obj, dict):
                for x in obj.values():
                    walk(x, depth + 1)

    walk(args, 0)
    walk(kwargs, 0)
    return list(found.values())


def substitute(obj: Any, depth: int = 0) -> Any:
    """``obj`` with every (done) future replaced by its result; containers are
    rebuilt with their own type (a named tuple keeps its class)."""
    if isinstance(obj, cf.Future):
        return obj.result()
    if depth >= MAX_DEPTH:
        return obj
    if isinstance(obj, list):
        return [substitute(x, depth + 1) for x in obj]
    if isinstance(obj, tuple):
        items = [substitute(x, depth + 1) for x in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(substitute(x, depth + 1) for x in obj)
    if isinstance(obj, dict):
        out = {k: substitute(v, depth + 1) for k, v in obj.items()}
        if type(obj) is dict:
            return out
        try:
            return type(obj)(out)
        except TypeError:
            return out
    return obj


def failure_of(dep: cf.Future) -> BaseException | None:
    """A done future's failure as its dependents see it (None: it succeeded)."""
    if dep.cancelled():
        return cf.CancelledError()
    exc = dep.exception()
    if exc is None:
        return None
    err = DependencyFailed(getattr(dep, "task_id", None), getattr(dep, "function_name", None),
                           exc)
    err.__cause__ = exc
    return err


class Held:
    """One dependent task waiting for its dependencies.  ``release(args,
    kwargs)`` submits it once every dependency succeeded; ``fail(exc)`` ends it
    when one failed; ``cancel()`` when one was cancelled; ``done()`` is called
    exactly once whichever happens (or when the dependent itself is cancelled)."""

    def __init__(self, fut: cf.Future, args: tuple, kwargs: dict, deps: list[cf.Future],
                 release: Callable[[tuple, dict], None], fail: Callable[[BaseException], None],
                 done: Callable[[], None]):
        self.fut, self.args, self.kwargs = fut, args, kwargs
        self._left = len(deps)
        self._release, self._fail, self._done = release, fail, done
        self._lock = threading.Lock()
        self._over = False
        fut.add_done_callback(lambda _f: self._finish())  # cancelled by its owner
        for d in deps:
            d.add_done_callback(self._dep_done)

    def _finish(self) -> bool:
        """Mark this dependent settled; True for the first caller only."""
        with self._lock:
            if self._over:
                return False
            self._over = True
        self._done()
        return True

    def _dep_done(self, dep: cf.Future) -> None:
        problem = failure_of(dep)
        with self._lock:
            if self._over:
                return
            self._left -= 1
            ready = problem is None and self._left == 0
            if problem is None and not ready:
                return
            self._over = True
        try:
            if isinstance(problem, cf.CancelledError):
                self.fut.cancel()
            elif problem is not None:
                self._fail(problem)
            else:
                try:
                    args, kwargs = substitute(self.args), substitute(self.kwargs)
                except BaseException as e:  # noqa: BLE001 - fails this task, not the caller
                    self._fail(e)
                else:
                    self._release(args, kwargs)
        finally:
            self._done()
