"""A task's retry policy and the record of its attempts, defined once for the
SDK (which builds a policy), the service (which validates it at submit) and
the endpoint (which applies it: :mod:`endpoint.retries`).

A policy is ``{"retries": N, "retry_on": [names]}``: run the task again, up to
``N`` more times, when it fails with an exception whose class (or a base
class) is named in ``retry_on`` — any exception when ``retry_on`` is empty.
Exceptions are matched by *name* (``"OSError"``, ``"mypkg.errors.Flaky"``),
never by unpickling them: the service distrusts payloads, and the worker knows
the class and its bases (``error_types`` in a failed result's details).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct, field

#: the most retries one task may ask for
MAX_RETRIES = 100
#: the most exception names one policy may list
MAX_RETRY_ON = 32
#: the most exception class names a worker reports for one failure (its MRO)
MAX_ERROR_TYPES = 32
#: the most attempts kept in a task's record (the latest; ``n`` numbers them all)
MAX_ATTEMPTS_RECORDED = 50
#: longest message kept per attempt
MAX_ATTEMPT_MESSAGE = 300
#: exceptions the endpoint raises itself that a retry cannot cure: never retried
NEVER_RETRIED = frozenset({"SerializationError", "MaxResultSizeExceeded"})
#: failures of the system, not the function: retried up to the endpoint's
#: ``max_retries_on_system_failure``, whatever the task's policy says
SYSTEM_FAILURES = frozenset({"WorkerLost", "ManagerLost"})

ExceptionName = Annotated[str, Meta(min_length=1, max_length=200,
                                    pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


class RetryPolicy(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What a submitter asks: up to ``retries`` re-runs on a failure whose
    exception is named in ``retry_on`` (any exception when empty)."""

    retries: Annotated[int, Meta(ge=0, le=MAX_RETRIES)] = 0
    retry_on: Annotated[list[ExceptionName], Meta(max_length=MAX_RETRY_ON)] = field(
        default_factory=list)


class RetryPolicyError(ValueError):
    """A retry policy that does not follow :class:`RetryPolicy`."""


def retry_policy(raw: Any) -> dict[str, Any]:
    """``raw`` checked against :class:`RetryPolicy`: the normalized dict (empty:
    no retries), or :class:`RetryPolicyError` naming the field."""
    if raw is None:
        return {}
    try:
        out = msgspec.to_builtins(msgspec.convert(raw, RetryPolicy))
    except (msgspec.ValidationError, TypeError, RecursionError) as e:
        raise RetryPolicyError(f"bad retry_policy: {e}") from None
    return out if out.get("retries") else {}


def exception_name(exc_type: type) -> str:
    """How an exception class is named in policies and failure reports: its
    qualified name, with the module for any class not a builtin."""
    mod = getattr(exc_type, "__module__", "") or ""
    qual = getattr(exc_type, "__qualname__", exc_type.__name__)
    return qual if mod == "builtins" else f"{mod}.{qual}"


def error_types(exc: BaseException) -> list[str]:
    """The names of ``exc``'s class and its bases, most specific first (bounded)."""
    names = [exception_name(c) for c in type(exc).__mro__ if c is not object]
    return names[:MAX_ERROR_TYPES]


def build_policy(retries: int | None, retry_on: Iterable[type | str] | type | str | None
                 ) -> dict[str, Any]:
    """The policy the SDK sends for ``retries`` and ``retry_on`` (exception
    classes or their names); refuses bad values here, before any request."""
    if retries is None or retries == 0:
        if retry_on:
            raise ValueError("retry_on needs retries >= 1")
        return {}
    if isinstance(retries, bool) or not isinstance(retries, int) \
            or not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"retries must be a whole number from 0 to {MAX_RETRIES}, "
                         f"not {retries!r}")
    if retry_on is None:
        items: list[type | str] = []
    elif isinstance(retry_on, (type, str)):
        items = [retry_on]
    else:
        items = list(retry_on)
    names = []
    for item in items:
        if isinstance(item, type) and issubclass(item, BaseException):
            names.append(exception_name(item))
        elif isinstance(item, str):
            names.append(item)
        else:
            raise TypeError(f"retry_on takes exception classes or their names, not {item!r}")
    try:
        return retry_policy({"retries": retries, "retry_on": list(dict.fromkeys(names))})
    except RetryPolicyError as e:
        raise ValueError(str(e)) from None


def matches(retry_on: Iterable[str], types: Iterable[str]) -> bool:
    """Whether a failure of the classes ``types`` (qualified names, as
    :func:`error_types` makes them) is one ``retry_on`` names: a name matches
    a class by its qualified name or by its last part(s) (``"Flaky"`` matches
    ``mypkg.Flaky``)."""
    wanted = list(retry_on)
    for t in types:
        for w in wanted:
            if t == w or t.endswith("." + w):
                return True
    return False


def policy_key(policy: dict[str, Any] | None) -> tuple:
    """A hashable form of a policy (tasks with equal policies share a request)."""
    if not policy:
        return ()
    return (policy.get("retries", 0), tuple(policy.get("retry_on") or ()))
