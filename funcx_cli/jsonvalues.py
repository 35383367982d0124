"""Python values as JSON values for ``--format json`` and ``funcx map`` output
(pure logic).  numpy arrays and scalars, and anything else with ``.tolist()``
(array-likes: numpy, torch, array.array), become JSON lists and numbers;
datetimes ISO 8601 strings; Decimals numbers; sets sorted lists; bytes text
(UTF-8) or ``{"base64": ...}``; complex ``{"real", "imag"}``; NaN and
infinities the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` (valid JSON,
unlike Python's bare ``NaN``).  Only a value none of these fits becomes its
full ``repr`` string, never cut short."""
from __future__ import annotations

import base64
import datetime
import decimal
import math
import uuid
from typing import Any

#: nesting deeper than this is shown as a repr (a guard against cycles)
MAX_DEPTH = 100


def to_json_value(value: Any, _depth: int = 0) -> Any:
    """``value`` as something :func:`json.dumps` writes as standard JSON."""
    if _depth > MAX_DEPTH:
        return repr(value)
    deeper = _depth + 1
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return {_key(k): to_json_value(v, deeper) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, deeper) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [to_json_value(v, deeper) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return _float(float(value))
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, complex):
        return {"real": _float(value.real), "imag": _float(value.imag)}
    if isinstance(value, uuid.UUID):
        return str(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays and scalars, array-likes
    if callable(tolist):
        try:
            return to_json_value(tolist(), deeper)
        except Exception:  # noqa: BLE001 - an odd .tolist(): fall through
            pass
    to_dict = getattr(value, "to_dict", None)  # pandas objects
    if callable(to_dict):
        try:
            return to_json_value(to_dict(), deeper)
        except Exception:  # noqa: BLE001
            pass
    return repr(value)


def _float(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _key(k: Any) -> str:
    """A JSON object key: strings stay, anything else its JSON text or str."""
    if isinstance(k, str):
        return k
    v = to_json_value(k)
    return v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
