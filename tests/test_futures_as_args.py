"""Futures as arguments (README "Futures as arguments"), with a real service and
endpoint: ``fxe.submit(g, fxe.submit(f, 1))`` runs ``g`` on ``f``'s result
without blocking the caller — chains, fan-in, futures nested in containers and
keywords, another executor's futures, a failed dependency's clear error, and
cancellation passed on.  The pure parts (finding and substituting futures) are
tested without a service at the end."""
from __future__ import annotations

import concurrent.futures as cf
import time
from collections import namedtuple
from pathlib import Path

import pytest
from faults.faultlib import wait_until

from funcx.errors import DependencyFailed
from funcx.sdk.dependencies import find_futures, substitute

WAIT_S = 60


# ------------------------------------------------------------ remote functions
def inc(x):
    return x + 1


def total(xs, extra=0):
    return sum(xs) + extra


def describe(pair, mapping, *, scale):
    return [pair[0] * scale, pair[1] * scale, sorted(mapping.items())]


def boom(x):
    raise RuntimeError(f"boom {x}")


def wait_for_file(path, value):
    """Return ``value`` once ``path`` exists (the test creates it: an event
    the dependency waits on), at most 60 s."""
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)
    return value


# ------------------------------------------------------------------ fixtures
@pytest.fixture
def fxe(fxc, endpoint):
    from funcx import FuncXExecutor

    ex = FuncXExecutor(endpoint_id=endpoint, client=fxc)
    yield ex
    ex.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------- tests
def test_a_chain_passes_each_result_on(fxe):
    a = fxe.submit(inc, 1)
    b = fxe.submit(inc, a)
    c = fxe.submit(inc, b)
    assert c.result(timeout=WAIT_S) == 4
    assert a.result() == 2 and b.result() == 3


def test_fan_in_from_a_list_of_futures(fxe):
    parts = [fxe.submit(inc, i) for i in range(5)]
    assert fxe.submit(total, parts).result(timeout=WAIT_S) == sum(range(1, 6))


def test_futures_nested_in_tuples_dicts_and_keywords(fxe):
    x, y = fxe.submit(inc, 10), fxe.submit(inc, 20)
    out = fxe.submit(describe, (x, 5), {"k": y, "plain": 1}, scale=fxe.submit(inc, 1))
    assert out.result(timeout=WAIT_S) == [22, 10, [("k", 21), ("plain", 1)]]


def test_submit_returns_before_its_dependency_finishes(fxe, tmp_path: Path):
    gate = tmp_path / "go"
    slow = fxe.submit(wait_for_file, str(gate), 41)
    fxe.register_function(inc)  # cached: the submit below sends no request
    t0 = time.monotonic()
    dependent = fxe.submit(inc, slow)
    assert time.monotonic() - t0 < 5.0  # returned at once: nothing waited for ``slow``
    assert not dependent.done() and dependent.task_id is None  # held, not submitted
    wait_until(lambda: slow.task_id is not None, timeout=WAIT_S)
    assert not slow.done()  # the dependency still waits for the gate
    gate.touch()
    assert dependent.result(timeout=WAIT_S) == 42
    assert dependent.task_id is not None


def test_a_local_future_is_a_dependency_too(fxe):
    event: cf.Future = cf.Future()
    dependent = fxe.submit(inc, event)
    assert dependent.task_id is None and not dependent.done()
    event.set_result(6)
    assert dependent.result(timeout=WAIT_S) == 7


def test_a_failed_dependency_fails_the_dependent_naming_it(fxe):
    bad = fxe.submit(boom, 3)
    dependent = fxe.submit(inc, bad)
    grand = fxe.submit(inc, dependent)
    with pytest.raises(DependencyFailed) as info:
        dependent.result(timeout=WAIT_S)
    err = info.value
    assert err.dependency_task_id == bad.task_id and bad.task_id in str(err)
    assert err.dependency_function == "boom" and "(boom)" in str(err)
    assert "RuntimeError: boom 3" in str(err) and isinstance(err.error, RuntimeError)
    assert err.__cause__ is err.error
    assert dependent.task_id is None  # never submitted
    with pytest.raises(DependencyFailed, match="DependencyFailed"):
        grand.result(timeout=WAIT_S)


def test_cancelling_a_dependency_cancels_its_dependents(fxe):
    event: cf.Future = cf.Future()
    dependent = fxe.submit(inc, event)
    grand = fxe.submit(inc, dependent)
    event.cancel()
    assert dependent.cancelled() and grand.cancelled()
    assert dependent.task_id is None and grand.task_id is None


def test_futures_of_another_executor(fxc, endpoint, fxe):
    from funcx import FuncXExecutor

    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as other:
        theirs = other.submit(inc, 100)
        assert fxe.submit(inc, theirs).result(timeout=WAIT_S) == 102


def test_shutdown_waits_for_held_dependents(fxc, endpoint):
    from funcx import FuncXExecutor

    ex = FuncXExecutor(endpoint_id=endpoint, client=fxc)
    event: cf.Future = cf.Future()
    dependent = ex.submit(inc, event)
    ex.shutdown(wait=False)  # the dependent still goes out once its input is there
    event.set_result(1)
    assert dependent.result(timeout=WAIT_S) == 2
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(inc, 1)


def test_shutdown_cancel_futures_cancels_held_dependents(fxc, endpoint):
    from funcx import FuncXExecutor

    ex = FuncXExecutor(endpoint_id=endpoint, client=fxc)
    dependent = ex.submit(inc, cf.Future())
    ex.shutdown(wait=True, cancel_futures=True)  # returns: nothing is left held
    assert dependent.cancelled()


# ------------------------------------------------------------------ pure parts
def test_find_and_substitute_futures_in_nested_containers():
    f1, f2 = cf.Future(), cf.Future()
    P = namedtuple("P", "a b")
    args = (f1, [1, (f2, {"k": f1})], P(f2, 3), {f1.__hash__(): "keys are left alone"})
    kwargs = {"x": {"y": [f2]}}
    assert find_futures(args, kwargs) == [f1, f2]
    f1.set_result("one")
    f2.set_result("two")
    got = substitute(args)
    assert got[:3] == ("one", [1, ("two", {"k": "one"})], P("two", 3))
    assert isinstance(got[2], P)
    assert substitute(kwargs) == {"x": {"y": ["two"]}}
    assert find_futures((1, "a", [2]), {}) == []
