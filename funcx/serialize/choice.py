"""Naming and choosing serialization strategies (Globus Compute's interface):
a strategy is given as an instance, a class or an import path such as
``"funcx.serialize.JSONData"`` or ``"globus_compute_sdk.serialize.JSONData"``.

The decisions here are pure, so the service (which validates a submit's
``result_serializers``), the endpoint (``allowed_serializers``, a result's
serializer) and the SDK share them:

* :func:`resolve` — a strategy-like to the strategy, by name only: an import
  path is never imported (the service and endpoint read paths from others),
  it must name one of :data:`SELECTABLE` under a known module;
* :func:`serialize_from_list` — the first strategy of a list that can
  serialize a value (how an endpoint serializes a result);
* :func:`parse_allowlist` / :func:`refusal` — an endpoint's allowed
  serializers, and whether a task's function and arguments keep to them;
* :func:`preferred` — the strategies an SDK picks for an endpoint's allowlist.
"""
from __future__ import annotations

from collections.abc import Iterable

from funcx.errors import SerializationError
from funcx.serialize import strategies as st
from funcx.serialize.buffers import unpack_buffers
from funcx.serialize.combos import COMBOS

#: every strategy a caller may choose, by class name (Globus Compute's names)
SELECTABLE: dict[str, st.Strategy] = {
    type(s).__name__: s for s in (*st.ALL.values(), *COMBOS.values())}
BY_ID: dict[str, st.Strategy] = {s.identifier: s for s in SELECTABLE.values()}
#: the modules an import path may name a strategy under (never imported)
MODULES = ("funcx.serialize", "funcx.serialize.strategies", "funcx.serialize.combos",
           "globus_compute_sdk.serialize", "globus_compute_sdk.serialize.concretes")
#: allowlist entries meaning "every code strategy" / "every data strategy"
CODE_WILDCARDS = ("globus_compute_sdk.*Code", "funcx.*Code")
DATA_WILDCARDS = ("globus_compute_sdk.*Data", "funcx.*Data")
#: at most this many names in one list (result_serializers, allowed_serializers)
MAX_NAMES = 16

Strategylike = st.Strategy | type | str


class StrategyChoiceError(SerializationError, ValueError):
    """A strategy name (or list of them) that is not one this project knows."""


def import_path(strategy: st.Strategy | type) -> str:
    """The canonical import path of ``strategy`` (``funcx.serialize.<Name>``)."""
    cls = strategy if isinstance(strategy, type) else type(strategy)
    return f"funcx.serialize.{cls.__name__}"


def known_names() -> str:
    return ", ".join(sorted(SELECTABLE))


def resolve(value: Strategylike, *, for_code: bool | None = None) -> st.Strategy:
    """The strategy ``value`` names; ``for_code``: it must be a code (True) or
    data (False) strategy.  :class:`StrategyChoiceError` names what is known."""
    if isinstance(value, str):
        module, _, name = value.strip().rpartition(".")
        found = SELECTABLE.get(name) if module in MODULES or not module else None
        if found is None:
            raise StrategyChoiceError(
                f"{value[:120]!r} is not a serialization strategy known here; use the import "
                f"path (funcx.serialize.NAME or globus_compute_sdk.serialize.NAME) of one of: "
                f"{known_names()}")
    else:
        cls = value if isinstance(value, type) else type(value)
        found = SELECTABLE.get(cls.__name__)
        if found is None or not isinstance(found, cls):
            raise StrategyChoiceError(f"{cls.__name__} is not a serialization strategy known "
                                      f"here; one of: {known_names()}")
    if for_code is not None and found.for_code != for_code:
        want, got = ("code", "data") if for_code else ("data", "code")
        raise StrategyChoiceError(f"{type(found).__name__} is a {got} serialization strategy, "
                                  f"expected a {want} strategy")
    return found


def import_paths(values: Iterable[Strategylike] | None) -> list[str]:
    """``values`` as canonical import paths (what a submit's ``result_serializers``
    carries); :class:`StrategyChoiceError` for an unknown one or too many."""
    if values is None:
        return []
    if isinstance(values, (str, st.Strategy, type)):
        values = [values]
    out = [import_path(resolve(v)) for v in values]
    if len(out) > MAX_NAMES:
        raise StrategyChoiceError(f"{len(out)} strategies given; at most {MAX_NAMES}")
    return out


def serialize_from_list(obj: object, strategies: Iterable[Strategylike]) -> str:
    """``obj`` serialized by the first of ``strategies`` that can (a code
    strategy only for a callable, a data strategy only for data);
    :class:`SerializationError` listing each strategy's failure if none can."""
    errors = []
    for s in strategies:
        try:
            return resolve(s, for_code=callable(obj) and not isinstance(obj, type)).serialize(obj)
        except Exception as e:  # noqa: BLE001 - each failure is reported, the next tried
            name = s if isinstance(s, str) else getattr(s, "__name__", type(s).__name__)
            errors.append(f"{str(name).rpartition('.')[2]}: {type(e).__name__}: {e}")
    raise SerializationError("; ".join(errors) or "no strategy given")


def parse_allowlist(values: Iterable[Strategylike] | None) -> frozenset[str] | None:
    """The identifiers an endpoint accepts (None: every one).  Like Globus
    Compute: import paths or the wildcards ``globus_compute_sdk.*Code`` /
    ``*Data`` (``funcx.*Code`` / ``*Data`` too), at least one code and one data
    strategy, and a wildcard not mixed with named strategies of its kind."""
    if values is None:
        return None
    if isinstance(values, (str, st.Strategy, type)):
        raise StrategyChoiceError("allowed_serializers must be a list of strategy import paths")
    values = list(values)
    if len(values) > MAX_NAMES * 2:
        raise StrategyChoiceError(f"allowed_serializers has {len(values)} entries; at most "
                                  f"{MAX_NAMES * 2}")
    named = [resolve(v) for v in values if v not in CODE_WILDCARDS + DATA_WILDCARDS]
    ids = {s.identifier for s in named}
    for wildcards, for_code in ((CODE_WILDCARDS, True), (DATA_WILDCARDS, False)):
        if any(v in wildcards for v in values):
            if any(s.for_code == for_code for s in named):
                raise StrategyChoiceError(f"allowed_serializers: {wildcards[0]!r} cannot be "
                                          f"mixed with named {'code' if for_code else 'data'} "
                                          f"strategies")
            ids |= {i for i, s in BY_ID.items() if s.for_code == for_code}
    kinds = {BY_ID[i].for_code for i in ids}
    if kinds != {True, False}:
        raise StrategyChoiceError("allowed_serializers needs at least one code and one data "
                                  f"strategy (or wildcard); got {values!r}")
    return frozenset(ids)


def allowed_paths(allowed: frozenset[str] | None) -> list[str] | None:
    """The canonical import paths of an allowlist, sorted (for metadata)."""
    if allowed is None:
        return None
    return sorted(import_path(BY_ID[i]) for i in allowed)


def refusal(function_code: str, payload: str, allowed: frozenset[str] | None) -> str | None:
    """Why a task breaks an endpoint's allowlist (its function or its arguments
    were serialized with a strategy outside it), or None if it keeps to it."""
    if allowed is None:
        return None
    try:
        parts = [("function", b) for b in unpack_buffers(function_code)]
        parts += [("arguments", b) for b in unpack_buffers(payload)]
    except SerializationError:
        return None  # malformed: the worker reports it as such
    for what, buf in parts:
        ident = buf[:2]
        if ident in allowed or buf[2:3] != "\n" or ident not in BY_ID:
            continue  # unknown identifiers fail on the worker with their own error
        kind = "code" if BY_ID[ident].for_code else "data"
        names = ", ".join(sorted(type(BY_ID[i]).__name__ for i in allowed
                                 if BY_ID[i].for_code == BY_ID[ident].for_code))
        fix = "register the function" if what == "function" else "send the arguments"
        return (f"the task's {what} used the {kind} serializer {type(BY_ID[ident]).__name__}, "
                f"which this endpoint does not accept; {fix} with one of its allowed {kind} "
                f"serializers: {names}")
    return None


#: the order an SDK prefers strategies in when an endpoint restricts them
CODE_PREFERENCE = ("01", "12", "04", "03", "st", "sd", "10")
DATA_PREFERENCE = ("00", "13", "11")


def fit(code: str | None, data: str, allowed: Iterable[str] | None) -> tuple[str | None, str]:
    """The (code, data) identifiers to use with an endpoint whose metadata
    lists ``allowed`` import paths: the caller's own where allowed, else the
    first allowed in :data:`CODE_PREFERENCE` / :data:`DATA_PREFERENCE`.
    ``code`` None is the default order (kept only when nothing is restricted)."""
    if not allowed:
        return code, data
    ids = set()
    for p in allowed:
        try:
            ids.add(resolve(p).identifier)
        except StrategyChoiceError:
            continue  # a strategy of a newer SDK: not one we would pick
    if code not in ids:
        code = next((i for i in CODE_PREFERENCE if i in ids), code)
    if data not in ids:
        data = next((i for i in DATA_PREFERENCE if i in ids), data)
    return code, data
