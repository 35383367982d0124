"""How command-line text becomes function arguments (pure logic).

``funcx run`` arguments: text that starts like JSON (``[``, ``{`` or ``"``)
must BE JSON, or the command stops with exit 2 (it is never sent as a string
by accident); other text is JSON where it parses (``3``, ``2.5``, ``true``,
``null``), else the string itself (``hello``).

``funcx map`` input lines, one task each:

- a JSON object whose keys are only ``args`` and/or ``kwargs`` is a call:
  ``{"args": [1, 2], "kwargs": {"order": 3}}`` (``args`` a list, ``kwargs``
  an object, either may be left out);
- any other JSON list is the argument list: ``[1, 2]``;
- any other JSON value is the single argument: ``3``, ``"text"``, ``{"a": 1}``.

So a single dict argument that itself has only ``args``/``kwargs`` keys is
written wrapped in a list: ``[{"args": [1]}]``.
"""
from __future__ import annotations

import json
from typing import Any

#: the keys that make a ``funcx map`` line a call, not an argument
CALL_KEYS = frozenset({"args", "kwargs"})


class BadArgument(ValueError):
    """Text that cannot be an argument (the CLI exits 2 with this message)."""


def parse_value(text: str) -> Any:
    """One ``funcx run`` argument (see the module docstring)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if text.lstrip()[:1] in ("[", "{", '"'):
            raise BadArgument(f"argument {text!r} is not valid JSON ({e.msg} at column "
                              f"{e.colno}); quote it for the shell, or pass plain text "
                              "that does not start with [ { or \"") from None
        return text


def parse_kwargs(text: str | None) -> dict[str, Any]:
    """``--kwargs``: a JSON object, or nothing."""
    if not text:
        return {}
    try:
        kw = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadArgument(f"--kwargs is not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(kw, dict):
        raise BadArgument("--kwargs must be a JSON object")
    return kw


def parse_call(value: Any) -> tuple[list[Any], dict[str, Any]]:
    """``(args, kwargs)`` of one decoded ``funcx map`` line."""
    if isinstance(value, dict) and value and set(value) <= CALL_KEYS:
        args, kwargs = value.get("args", []), value.get("kwargs", {})
        if not isinstance(args, list):
            raise BadArgument('"args" must be a JSON list')
        if not isinstance(kwargs, dict):
            raise BadArgument('"kwargs" must be a JSON object')
        return args, kwargs
    if isinstance(value, list):
        return value, {}
    return [value], {}


def parse_lines(lines: list[str], source: str) -> list[tuple[list[Any], dict[str, Any]]]:
    """The calls of a ``funcx map`` input (blank lines skipped); a bad line
    raises :class:`BadArgument` naming ``source:line``."""
    calls = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            calls.append(parse_call(json.loads(line)))
        except json.JSONDecodeError as e:
            raise BadArgument(f"{source}:{n}: not JSON ({e.msg})") from None
        except BadArgument as e:
            raise BadArgument(f"{source}:{n}: {e}") from None
    return calls
