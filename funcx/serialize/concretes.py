"""The funcX 0.0.1a5 ``funcx.serialize.concretes`` classes, over the funcX 1.x
wire format.

The 0.0.1a5 identifiers (``00`` JSON, ``01`` pickle, ...) were reassigned in
funcX 1.x, and the later generation wins on the wire: each class here writes
the 1.x identifier of the same method, so what it writes deserializes with
``FuncXSerializer`` and on any endpoint.

=====================  ============  =========================================
0.0.1a5 class          identifier    funcX 1.x method
=====================  ============  =========================================
``json_base64``        ``11``        JSON text
``pickle_base64``      ``00``        pickled data, base64 (read with dill)
``code_pickle``        ``01``        the function pickled by dill
``code_text_dill``     ``04``        the source, found by dill
``code_text_inspect``  ``03``        the source, found by ``inspect``
=====================  ============  =========================================
"""
from __future__ import annotations

from typing import Any

from funcx.serialize import strategies as st
from funcx.serialize.base import DeserializationError, fxPicker_shared

__all__ = ["code_pickle", "code_text_dill", "code_text_inspect", "json_base64",
           "pickle_base64"]


class _Over(fxPicker_shared):
    _strategy: st.Strategy

    def serialize(self, data: Any) -> str:
        return self._strategy.serialize(data)

    def deserialize(self, payload: str) -> Any:
        self.check(payload)
        try:
            return self._strategy.deserialize(payload)
        except Exception as e:
            raise DeserializationError(f"{type(e).__name__}: {e}") from e


class json_base64(_Over):  # noqa: N801 - the documented 0.0.1a5 name
    _identifier, _for_code, _strategy = "11\n", False, st.JSONData()


class pickle_base64(_Over):  # noqa: N801
    _identifier, _for_code, _strategy = "00\n", False, st.DillDataBase64()


class code_pickle(_Over):  # noqa: N801
    _identifier, _for_code, _strategy = "01\n", True, st.DillCode()


class code_text_dill(_Over):  # noqa: N801
    _identifier, _for_code, _strategy = "04\n", True, st.DillCodeSource()


class code_text_inspect(_Over):  # noqa: N801
    _identifier, _for_code, _strategy = "03\n", True, st.CodeTextInspect()
