"""The funcX 0.0.1a5 ``funcx.serialize.base`` names, kept so code written
against that reference imports and runs.

``fxPicker_shared`` gives a serializer its 0.0.1a5 helpers (``identifier``
with its newline, ``check``, ``chomp``); the concrete classes in
:mod:`funcx.serialize.concretes` write funcX 1.x wire identifiers.
"""
from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class DeserializationError(Exception):
    """Base class for all deserialization errors (0.0.1a5)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SerializerError:
    """A serializer's error report, as 0.0.1a5 had it (not an exception there either)."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"SerializerError({self.reason!r})"


class RemoteExceptionWrapper:
    """Carries an exception (type, value, traceback) to be raised again elsewhere."""

    def __init__(self, e_type: type[BaseException], e_value: BaseException,
                 traceback: TracebackType | None):
        self.e_type = e_type
        self.e_value = e_value
        self.e_traceback = traceback

    def reraise(self) -> None:
        raise self.e_value.with_traceback(self.e_traceback)

    @classmethod
    def current(cls) -> RemoteExceptionWrapper:
        """The exception being handled, wrapped."""
        t, v, tb = sys.exc_info()
        if t is None or v is None:
            raise RuntimeError("no exception is being handled")
        return cls(t, v, tb)


class fxPicker_enforcer:  # noqa: N801 - the documented 0.0.1a5 name
    """Every concrete serializer has ``serialize`` and ``deserialize``."""

    def serialize(self, data: Any) -> str:
        raise NotImplementedError

    def deserialize(self, payload: str) -> Any:
        raise NotImplementedError


class fxPicker_shared(fxPicker_enforcer):  # noqa: N801 - the documented 0.0.1a5 name
    """Shared helpers: ``identifier`` (two characters and a newline), ``check``, ``chomp``."""

    _identifier = ""
    _for_code = False

    @property
    def identifier(self) -> str:
        return self._identifier

    def check(self, payload: str) -> None:
        """Raise ``DeserializationError`` unless ``payload`` starts with this identifier."""
        if not payload.startswith(self._identifier):
            raise DeserializationError(
                f"buffer does not start with identifier {self._identifier!r}")

    def chomp(self, payload: str) -> str:
        """``payload`` without its identifier (``DeserializationError`` if it is not ours)."""
        self.check(payload)
        return payload[len(self._identifier):]
