"""``FuncXSerializer``: pick a strategy, pack buffers, and unpack them again."""
from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from funcx.errors import SerializationError
from funcx.serialize import strategies as st


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


class PackedStrategies(st.Strategy):
    """``12`` / ``13``: several strategies' outputs packed as buffers; the
    reader uses the first that deserializes."""

    def __init__(self, identifier: str, for_code: bool, parts: tuple[str, ...]):
        self.identifier, self.for_code, self.parts = identifier, for_code, parts

    def serialize(self, obj: Any) -> str:
        bufs = []
        for ident in self.parts:
            try:
                bufs.append(st.ALL[ident].serialize(obj))
            except Exception:
                continue
        if not bufs:
            raise SerializationError(f"no strategy could serialize {type(obj).__name__}")
        return self.header + pack_buffers(bufs)

    def deserialize(self, payload: str) -> Any:
        errors = []
        for buf in unpack_buffers(self.chomp(payload)):
            try:
                return _strategy_for(buf).deserialize(buf)
            except Exception as e:
                errors.append(f"{buf[:2]}: {type(e).__name__}: {e}")
        raise SerializationError("no packed strategy worked: " + "; ".join(errors))


STRATEGIES: dict[str, st.Strategy] = {
    **st.ALL,
    "10": CombinedCode(),
    "12": PackedStrategies("12", True, ("st", "sd", "01")),
    "13": PackedStrategies("13", False, ("11", "00")),
}
# Code strategies, tried in order.  dill pickles a function from an importable
# module by reference (the endpoint would need that module), so such functions
# travel as source; functions of __main__ (scripts, notebooks) travel as dill
# by value, which also carries the globals they use.
CODE_ORDER = ("01", "04", "03")
CODE_ORDER_IMPORTABLE = ("04", "03", "01")
DATA_ORDER = ("00",)


def pack_buffers(buffers: list[str]) -> str:
    """``<len>\\n<data>`` for each buffer, concatenated (len counted in characters)."""
    return "".join(f"{len(b)}\n{b}" for b in buffers)


def unpack_buffers(packed: str) -> list[str]:
    out, pos, n = [], 0, len(packed)
    while pos < n:
        nl = packed.find("\n", pos)
        if nl < 0:
            raise SerializationError("malformed packed buffer: missing length line")
        try:
            length = int(packed[pos:nl])
        except ValueError as e:
            raise SerializationError(f"malformed packed buffer length {packed[pos:nl][:20]!r}") from e
        start, end = nl + 1, nl + 1 + length
        if length < 0 or end > n:
            raise SerializationError("malformed packed buffer: truncated")
        out.append(packed[start:end])
        pos = end
    return out


def _strategy_for(payload: str) -> st.Strategy:
    ident = payload[:2]
    if len(payload) < 3 or payload[2] != "\n" or ident not in STRATEGIES:
        raise SerializationError(f"unknown serialization identifier {ident!r}")
    return STRATEGIES[ident]


def environment_hint() -> str:
    import dill

    return f"python {sys.version_info.major}.{sys.version_info.minor}, dill {dill.__version__}"


class FuncXSerializer:
    """Serialize functions and data to the funcX wire format and back."""

    def __init__(self, code_strategy: str | None = None, data_strategy: str | None = None):
        self.code_order = (code_strategy,) if code_strategy else None
        self.data_order = (data_strategy,) if data_strategy else DATA_ORDER

    def _order_for(self, obj: Any) -> tuple[str, ...]:
        if not callable(obj) or isinstance(obj, type):
            return self.data_order
        if self.code_order:
            return self.code_order
        if getattr(obj, "__module__", "__main__") in ("__main__", None) or \
                getattr(obj, "__name__", "") == "<lambda>":
            return CODE_ORDER
        return CODE_ORDER_IMPORTABLE

    def serialize(self, obj: Any) -> str:
        order = self._order_for(obj)
        errors = []
        for ident in order:
            try:
                return STRATEGIES[ident].serialize(obj)
            except Exception as e:
                errors.append(f"{ident}: {type(e).__name__}: {e}")
        raise SerializationError(f"cannot serialize {type(obj).__name__} object: " + "; ".join(errors))

    def deserialize(self, payload: str) -> Any:
        strategy = _strategy_for(payload)
        try:
            return strategy.deserialize(payload)
        except SerializationError:
            raise
        except Exception as e:
            raise SerializationError(
                f"cannot deserialize {strategy.identifier!r} data: {type(e).__name__}: {e} "
                f"(this side runs {environment_hint()}; differing Python or dill versions "
                "between SDK and endpoint are a common cause)"
            ) from e

    pack_buffers = staticmethod(pack_buffers)
    unpack_buffers = staticmethod(unpack_buffers)

    def unpack_and_deserialize(self, packed: str) -> list[Any]:
        return [self.deserialize(b) for b in unpack_buffers(packed)]

    def serialize_function(self, fn: Callable) -> str:
        """``function_code`` of a registration: one packed buffer."""
        return pack_buffers([self.serialize(fn)])

    def serialize_payload(self, args: tuple, kwargs: dict) -> str:
        """A task payload: the packed (args, kwargs) pair."""
        return pack_buffers([self.serialize(tuple(args)), self.serialize(dict(kwargs))])


class FunctionCache:
    """Deserialized functions keyed by a hash of their code, so repeated calls
    of one function in a worker skip deserialization."""

    def __init__(self, serializer: FuncXSerializer, size: int = 256):
        self._ser = serializer
        self._size = size
        self._cache: OrderedDict[bytes, Callable] = OrderedDict()
        self.hits = 0

    def get(self, packed_code: str) -> Callable:
        key = hashlib.blake2b(packed_code.encode(), digest_size=16).digest()
        fn = self._cache.get(key)
        if fn is not None:
            self._cache.move_to_end(key)
            self.hits += 1
            return fn
        bufs = unpack_buffers(packed_code)
        if len(bufs) != 1:
            raise SerializationError(f"function code holds {len(bufs)} buffers, expected 1")
        fn = self._ser.deserialize(bufs[0])
        self._cache[key] = fn
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return fn
