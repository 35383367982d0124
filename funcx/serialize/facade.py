"""``FuncXSerializer``: pick a strategy, pack buffers, and unpack them again."""
from __future__ import annotations

import hashlib
import inspect
import sys
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from funcx.errors import SerializationError
from funcx.serialize import strategies as st
from funcx.serialize.buffers import pack_buffers, unpack_buffers
from funcx.serialize.choice import BY_ID, Strategylike, parse_allowlist, resolve, serialize_from_list
from funcx.serialize.combos import COMBOS, AllCodeStrategies, AllDataStrategies, CombinedCode

__all__ = ["AllCodeStrategies", "AllDataStrategies", "CombinedCode", "ComputeSerializer",
           "FunctionCache", "FuncXSerializer", "pack_buffers", "unpack_buffers"]


STRATEGIES: dict[str, st.Strategy] = {**st.ALL, **COMBOS}
# Code strategies, tried in order.  dill pickles a function from an importable
# module by reference (the endpoint would need that module), so such functions
# travel as source; functions of __main__ (scripts, notebooks) travel as dill
# by value, which also carries the globals they use.
CODE_ORDER = ("01", "04", "03")
CODE_ORDER_IMPORTABLE = ("04", "03", "01")
DATA_ORDER = ("00",)


def _strategy_for(payload: str) -> st.Strategy:
    ident = payload[:2]
    if len(payload) < 3 or payload[2] != "\n" or ident not in STRATEGIES:
        raise SerializationError(f"unknown serialization identifier {ident!r}")
    return STRATEGIES[ident]


def environment_hint() -> str:
    import dill

    return f"python {sys.version_info.major}.{sys.version_info.minor}, dill {dill.__version__}"


def _ident(value: Strategylike | None, for_code: bool) -> str | None:
    """A two-character identifier, or a strategy-like, as an identifier."""
    if value is None or (isinstance(value, str) and value in STRATEGIES):
        return value
    return resolve(value, for_code=for_code).identifier


class FuncXSerializer:
    """Serialize functions and data to the funcX wire format and back.

    ``code_strategy`` / ``data_strategy``: the strategy for functions / for
    data, as an identifier (``"01"``), a strategy, its class or its import path.
    Without a code strategy, functions try dill by value, dill source and
    inspect source in turn (source first for functions of importable modules),
    the first that serializes wins.  ``allowed_deserializer_types``: refuse to
    deserialize anything else (see :func:`funcx.serialize.choice.parse_allowlist`)."""

    def __init__(self, code_strategy: Strategylike | None = None,
                 data_strategy: Strategylike | None = None, *,
                 allowed_deserializer_types: list[Strategylike] | None = None):
        code, data = _ident(code_strategy, True), _ident(data_strategy, False)
        self.code_order = (code,) if code else None
        self.data_order = (data,) if data else DATA_ORDER
        self.allowed = parse_allowlist(allowed_deserializer_types)

    @property
    def code_serializer(self) -> st.Strategy | None:
        """The chosen code strategy (None: the default order)."""
        return STRATEGIES[self.code_order[0]] if self.code_order else None

    @property
    def data_serializer(self) -> st.Strategy:
        return STRATEGIES[self.data_order[0]]

    def _order_for(self, obj: Any) -> tuple[str, ...]:
        if not callable(obj) or isinstance(obj, type):
            return self.data_order
        if self.code_order:
            return self.code_order
        if getattr(obj, "__module__", "__main__") in ("__main__", None) or \
                getattr(obj, "__name__", "") == "<lambda>":
            return CODE_ORDER
        if not (inspect.isfunction(obj) or inspect.ismethod(obj)):
            return CODE_ORDER  # a callable object (a ShellFunction): "its source" is its class's
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
        if self.allowed is not None and strategy.identifier not in self.allowed:
            names = ", ".join(sorted(type(BY_ID[i]).__name__ for i in self.allowed))
            raise SerializationError(f"{type(strategy).__name__} data is not allowed here "
                                     f"(allowed: {names})")
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


class ComputeSerializer(FuncXSerializer):
    """Globus Compute's name and keywords: ``ComputeSerializer(strategy_code=...,
    strategy_data=..., allowed_deserializer_types=[...])``."""

    def __init__(self, strategy_code: Strategylike | None = None,
                 strategy_data: Strategylike | None = None, *,
                 allowed_deserializer_types: list[Strategylike] | None = None):
        super().__init__(strategy_code, strategy_data,
                         allowed_deserializer_types=allowed_deserializer_types)

    @staticmethod
    def serialize_from_list(data: Any, strategies: list[Strategylike]) -> str:
        """``data`` by the first of ``strategies`` that can serialize it."""
        return serialize_from_list(data, strategies)


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
