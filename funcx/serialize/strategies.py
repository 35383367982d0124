"""Serialization strategies of the funcX wire format (API.md).

Every serialized item is ``<two-character identifier>\\n<data>``.  Base64 is
MIME style (``codecs`` "base64": 76-character lines, trailing newline), as
the public SDKs write it.
"""
from __future__ import annotations

import codecs
import hashlib
import inspect
import json
import linecache
import pickle
from collections.abc import Callable
from typing import Any

import dill
import dill.source


def _b64(raw: bytes) -> str:
    return codecs.encode(raw, "base64").decode()


def _unb64(text: str) -> bytes:
    return codecs.decode(text.encode(), "base64")


class Strategy:
    identifier: str  # two characters, without the newline
    for_code: bool

    @property
    def header(self) -> str:
        return self.identifier + "\n"

    def chomp(self, payload: str) -> str:
        if not payload.startswith(self.header):
            raise ValueError(f"payload does not start with {self.identifier!r}")
        return payload[len(self.header):]

    def serialize(self, obj: Any) -> str:
        raise NotImplementedError

    def deserialize(self, payload: str) -> Any:
        raise NotImplementedError


# ----------------------------------------------------------------------- data
_PLAIN_SCALARS = (int, float, str, bytes, bool, type(None))
_PLAIN_CONTAINERS = (list, tuple, set, frozenset)


def _plain(obj: Any, budget: list[int]) -> bool:
    """Builtin data only (so pickle writes exactly what dill would), checked
    over at most ``budget`` items."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    t = type(obj)
    if t in _PLAIN_SCALARS:
        return True
    if t in _PLAIN_CONTAINERS:
        return all(_plain(x, budget) for x in obj)
    if t is dict:
        return all(_plain(k, budget) and _plain(v, budget) for k, v in obj.items())
    return False


class DillDataBase64(Strategy):
    """``00``: pickled data.  Plain builtin data goes through the standard
    pickle (byte-identical to dill's output for it, and ~20x faster); the rest
    through dill."""

    identifier, for_code = "00", False

    def serialize(self, obj: Any) -> str:
        if _plain(obj, [1000]):
            raw = pickle.dumps(obj, protocol=dill.settings["protocol"])
        else:
            raw = dill.dumps(obj)
        return self.header + _b64(raw)

    def deserialize(self, payload: str) -> Any:
        return dill.loads(_unb64(self.chomp(payload)))


class JSONData(Strategy):
    """``11``: JSON text, readable by any language (JSON-able data only)."""

    identifier, for_code = "11", False

    def serialize(self, obj: Any) -> str:
        return self.header + json.dumps(obj)

    def deserialize(self, payload: str) -> Any:
        return json.loads(self.chomp(payload))


# ----------------------------------------------------------------------- code
def _exec_source(name: str, source: str) -> Callable:
    # a file name of its own, with the source in linecache, so a remote
    # traceback shows the failing line and not just `File "<string>", line N`
    digest = hashlib.blake2b(source.encode(), digest_size=4).hexdigest()
    filename = f"<funcx function {name} {digest}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - running user code is the point
    return namespace[name]


class DillCode(Strategy):
    """``01``: the function pickled by dill (by value for ``__main__``)."""

    identifier, for_code = "01", True

    def serialize(self, obj: Any) -> str:
        return self.header + _b64(dill.dumps(obj, recurse=True))

    def deserialize(self, payload: str) -> Any:
        return dill.loads(_unb64(self.chomp(payload)))


class DillCodeTextInspect(Strategy):
    """``03``: (name, source found by ``inspect``), pickled (Globus Compute's name)."""

    identifier, for_code = "03", True

    def _source(self, fn: Callable) -> str:
        return inspect.getsource(fn)

    def serialize(self, obj: Any) -> str:
        name, source = obj.__name__, self._source(obj)
        return self.header + _b64(pickle.dumps((name, source)))

    def deserialize(self, payload: str) -> Any:
        name, source = pickle.loads(_unb64(self.chomp(payload)))
        return _exec_source(name, source)


#: the funcX 1.x name of :class:`DillCodeTextInspect`
CodeTextInspect = DillCodeTextInspect


class DillCodeSource(DillCodeTextInspect):
    """``04``: (name, source found by dill), pickled."""

    identifier = "04"

    def _source(self, fn: Callable) -> str:
        return dill.source.getsource(fn, lstrip=True)


class PureSourceTextInspect(Strategy):
    """``st``: plain ``name:source`` text, readable by humans and other languages."""

    identifier, for_code = "st", True

    def _source(self, fn: Callable) -> str:
        return inspect.getsource(fn)

    def serialize(self, obj: Any) -> str:
        return f"{self.header}{obj.__name__}:{self._source(obj)}"

    def deserialize(self, payload: str) -> Any:
        name, source = self.chomp(payload).split(":", 1)
        return _exec_source(name, source)


class PureSourceDill(PureSourceTextInspect):
    """``sd``: plain ``name:source`` text, the source found by dill."""

    identifier = "sd"

    def _source(self, fn: Callable) -> str:
        return dill.source.getsource(fn, lstrip=True)


ALL: dict[str, Strategy] = {
    s.identifier: s
    for s in (DillDataBase64(), JSONData(), DillCode(), DillCodeTextInspect(), DillCodeSource(),
              PureSourceTextInspect(), PureSourceDill())
}
