"""Strategies that combine others, so a function or value travels in several
forms and the reading side uses the first it can (Globus Compute's
``CombinedCode``, ``AllCodeStrategies`` and ``AllDataStrategies``).

``AllCodeStrategies`` is the one to choose when the endpoint's Python or dill
may differ from yours: the function travels as plain source (found by
``inspect``, then by dill) and as dill bytes; the endpoint tries each in that
order until one gives it a function.
"""
from __future__ import annotations

from typing import Any, ClassVar

from funcx.errors import SerializationError
from funcx.serialize import strategies as st
from funcx.serialize.buffers import pack_buffers, unpack_buffers


class CombinedCode(st.Strategy):
    """``10`` (deprecated upstream, still read): ``:``-joined (header, body) pairs
    of several code strategies.  Source-text bodies contain ``:`` themselves,
    so the reader walks pairs leniently and returns the first that works."""

    identifier, for_code = "10", True
    parts = ("04", "01", "03")

    def serialize(self, obj: Any) -> str:
        chunks = []
        for ident in self.parts:
            try:
                body = st.ALL[ident].serialize(obj)
            except Exception:
                continue
            chunks += [body[:3], body[3:]]
        if not chunks:
            raise SerializationError(f"no code strategy could serialize {obj!r}")
        return self.header + ":".join(chunks)

    def deserialize(self, payload: str) -> Any:
        pieces = self.chomp(payload).split(":")
        errors = []
        for head, body in zip(pieces[::2], pieces[1::2]):
            if head[:2] not in st.ALL:
                break  # misaligned after a source-text part: nothing more to trust
            try:
                return st.ALL[head[:2]].deserialize(head + body)
            except Exception as e:
                errors.append(f"{head[:2]}: {type(e).__name__}: {e}")
        raise SerializationError("no combined code strategy worked: " + "; ".join(errors))


class _Combo(st.Strategy):
    """Every part that can serialize the object, packed as buffers; the reader
    uses the first part that deserializes, in the order written."""

    parts: ClassVar[tuple[str, ...]]

    def serialize(self, obj: Any) -> str:
        bufs, errors = [], []
        for ident in self.parts:
            try:
                bufs.append(st.ALL[ident].serialize(obj))
            except Exception as e:
                errors.append(f"{type(st.ALL[ident]).__name__}: {type(e).__name__}: {e}")
        if not bufs:
            raise SerializationError(f"no part of {type(self).__name__} could serialize "
                                     f"{type(obj).__name__}: " + "; ".join(errors))
        return self.header + pack_buffers(bufs)

    def deserialize(self, payload: str) -> Any:
        errors = []
        for buf in unpack_buffers(self.chomp(payload)):
            part = st.ALL.get(buf[:2]) if buf[2:3] == "\n" else None
            if part is None:
                errors.append(f"{buf[:2]!r}: not a strategy this combination holds")
                continue
            try:
                return part.deserialize(buf)
            except Exception as e:
                errors.append(f"{type(part).__name__}: {type(e).__name__}: {e}")
        raise SerializationError(f"no part of {type(self).__name__} deserialized: "
                                 + "; ".join(errors))


class AllCodeStrategies(_Combo):
    """``12``: the function as plain source (``inspect``, then dill's
    ``getsource``) and as dill bytes; the endpoint tries each in that order."""

    identifier, for_code = "12", True
    parts = ("st", "sd", "01")


class AllDataStrategies(_Combo):
    """``13``: the data as JSON (when it is JSON-able) and as dill bytes."""

    identifier, for_code = "13", False
    parts = ("11", "00")


COMBOS: dict[str, st.Strategy] = {s.identifier: s for s in
                                  (CombinedCode(), AllCodeStrategies(), AllDataStrategies())}
