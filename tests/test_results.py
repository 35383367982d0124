"""Turning task documents into results (pure SDK logic, no service needed)."""
from __future__ import annotations

import base64
import pickle

import pytest

from funcx.errors import SerializationError, TaskExecutionFailed
from funcx.sdk.results import task_status
from funcx.serialize import FuncXSerializer


def _unimportable_result() -> str:
    """A result pickled on an endpoint that has a module this side lacks."""
    import sys
    import types

    mod = types.ModuleType("no_such_module_fx")

    class X:
        pass

    X.__module__, X.__qualname__ = "no_such_module_fx", "X"
    mod.X = X
    sys.modules["no_such_module_fx"] = mod
    try:
        raw = pickle.dumps(X())
    finally:
        del sys.modules["no_such_module_fx"]
    return "00\n" + base64.encodebytes(raw).decode()


def test_result_from_other_versions_names_them():
    doc = {"task_id": "t", "status": "success", "completion_t": "1", "result": _unimportable_result(),
           "details": {"python_version": "3.9.1", "dill_version": "0.3.5"}}
    with pytest.raises(SerializationError) as e:
        task_status(doc, FuncXSerializer())
    assert "no_such_module_fx" in str(e.value)
    assert "Python 3.9.1 on the endpoint" in str(e.value) and "dill 0.3.5" in str(e.value)


def test_same_versions_no_hint():
    import platform

    import dill

    doc = {"task_id": "t", "status": "success", "completion_t": "1", "result": _unimportable_result(),
           "details": {"python_version": platform.python_version(), "dill_version": dill.__version__}}
    with pytest.raises(SerializationError) as e:
        task_status(doc, FuncXSerializer())
    assert "on the endpoint but" not in str(e.value)


def test_failed_without_exception_data_is_task_execution_failed():
    st = task_status({"task_id": "t", "status": "failed", "completion_t": "2",
                      "exception": "Traceback...\nValueError: x"}, FuncXSerializer())
    assert isinstance(st["exception"], TaskExecutionFailed)
    assert st["exception"].completion_t == "2" and "ValueError: x" in str(st["exception"])


def test_pending_carries_reason():
    st = task_status({"task_id": "t", "status": "waiting-for-ep"}, FuncXSerializer())
    assert st["pending"] and st["reason"] == "waiting-for-ep"
