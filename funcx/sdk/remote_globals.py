"""Which global names a function uses that will not exist where it runs.

A function from an importable module travels as its source text, and the
endpoint runs that source alone: the module's globals (``import numpy as np``
at the top of the file, constants, helper functions) are not there, and the
call fails with ``NameError``.  A function of ``__main__`` (a script, a
notebook) travels by value with dill, which carries the globals it uses.
:func:`missing_globals` finds the names (pure: only the function's code and
globals are read); registration warns about them with
:class:`MissingGlobalWarning`.
"""
from __future__ import annotations

import builtins
import dis
import types
from collections.abc import Callable, Iterator
from typing import Any

#: serializer identifiers that ship source text, run remotely without the
#: module's globals ("10" and "12" read their source parts first)
SOURCE_IDENTIFIERS = frozenset({"03", "04", "st", "sd", "10", "12"})

_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
_STORES = frozenset({"STORE_GLOBAL", "STORE_NAME"})


class MissingGlobalWarning(UserWarning):
    """A registered function uses module-level names that will not exist where
    it runs (it is shipped as source); import them inside the function."""


def ships_as_source(serialized: str) -> bool:
    """Whether one serialized function (``<identifier>\\n<data>``) is source text."""
    return serialized[:2] in SOURCE_IDENTIFIERS


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def global_names(fn: Callable) -> list[str]:
    """Global names ``fn``'s code (nested functions and classes included) reads
    and does not itself assign with ``global``, in first-use order."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    loaded: dict[str, None] = {}
    stored: set[str] = set()
    for co in _code_objects(code):
        for ins in dis.get_instructions(co):
            if ins.opname in _LOADS and isinstance(ins.argval, str):
                loaded.setdefault(ins.argval)
            elif ins.opname in _STORES and isinstance(ins.argval, str):
                stored.add(ins.argval)
    return [n for n in loaded if n not in stored]


def _hint(name: str, value: Any) -> str:
    """How to have ``name`` inside the function instead."""
    if isinstance(value, types.ModuleType):
        mod = value.__name__
        return f"import {mod}" if mod == name else f"import {mod} as {name}"
    module = getattr(value, "__module__", None)
    if module and getattr(value, "__name__", None) and not module.startswith("funcx_user_"):
        real = value.__name__
        return f"from {module} import {real}" + ("" if real == name else f" as {name}")
    return f"pass {name} as an argument (or define it inside the function)"


def missing_globals(fn: Callable) -> list[tuple[str, str]]:
    """``(name, hint)`` for each global ``fn`` reads that a source-shipped copy
    would not have: not a builtin, not the function's own name (recursion)."""
    own = getattr(fn, "__name__", None)
    env = getattr(fn, "__globals__", {})
    out = []
    for name in global_names(fn):
        if name == own or name in vars(builtins):
            continue
        out.append((name, _hint(name, env.get(name))))
    return out


def warning_text(fn: Callable, missing: list[tuple[str, str]]) -> str:
    """The message of :class:`MissingGlobalWarning` for ``fn``."""
    names = ", ".join(n for n, _ in missing)
    where = getattr(fn, "__module__", None) or "its module"
    fixes = "; ".join(f"{n}: {h}" for n, h in missing)
    return (f"function {getattr(fn, '__name__', fn)!r} uses {names}, defined at module level "
            f"in {where}: it is shipped as source code and runs without its module's globals, "
            f"so {names} will not exist on the endpoint (NameError when it runs). Put the "
            f"imports inside the function body ({fixes})")
