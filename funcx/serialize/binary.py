"""The binary form of serialized items, and blob references (issue 20).

A serialized item in the wire format (API.md) is text, ``<id>\\n<data>``,
where the data of the pickle strategies is MIME base64.  Its *binary form*
is ``<id>\\n`` followed by the raw bytes: the pickle itself for the base64
strategies, the UTF-8 text for the others.  The two forms carry the same
value; :func:`to_binary` and :func:`to_text` convert.

Large items travel in binary form, out of band, as *blobs*: the packed
payload (or a result's ``data``) holds a short *reference item*
``bb\\n<ref>`` in the item's place, and the blob's bytes travel beside it —
as a frame of the binary submit body (:mod:`funcx.serialize.frames`), as a
Redis string under the endpoint's prefix, as a ZeroMQ frame to and from the
worker, and as an ``application/octet-stream`` answer.  What ``<ref>`` names
depends on the hop (a frame index in a submit body, a blob id in Redis); the
public-SDK JSON routes never show a reference: the service puts the item's
text form in its place, so their wire format is unchanged.

Items of at least :func:`blob_min_bytes` (``FUNCX_BLOB_MIN_BYTES``) go as
blobs; smaller ones stay inline text, where base64 costs less than a hop.
"""
from __future__ import annotations

import binascii
import io
import pickle
from typing import Any

import dill

from funcx.errors import SerializationError

#: identifier of a reference item: ``bb\n<ref>``
REF_ID = "bb"
REF_PREFIX = REF_ID + "\n"
#: identifiers whose text form is MIME base64 of the binary form's bytes
BASE64_IDS = frozenset({"00", "01", "03", "04"})
#: the longest reference a hop accepts (a uuid, a task id, a frame index)
MAX_REF_LEN = 64


def blob_min_bytes() -> int:
    """Items this large or larger travel as blobs (FUNCX_BLOB_MIN_BYTES)."""
    from funcx.defaults import setting

    return int(setting("BLOB_MIN_BYTES"))


# --------------------------------------------------------------- references
def is_ref(item: str) -> bool:
    """Whether a serialized item is a blob reference."""
    return item.startswith(REF_PREFIX)


def ref(name: str) -> str:
    """The reference item naming ``name``."""
    return REF_PREFIX + name


def ref_name(item: str) -> str:
    """What a reference item names; SerializationError if it is not one."""
    name = item[len(REF_PREFIX):]
    if not is_ref(item) or not name or len(name) > MAX_REF_LEN or not all(
            c.isalnum() or c in "._-" for c in name):
        raise SerializationError(f"malformed blob reference {item[:40]!r}")
    return name


# ----------------------------------------------------------- the two forms
def mime_b64(raw: bytes | memoryview) -> str:
    """``codecs``' MIME base64 (76-character lines, trailing newline), as the
    public SDKs write it."""
    b = binascii.b2a_base64(raw, newline=False)
    if not b:
        return ""
    lines = [b[i:i + 76] for i in range(0, len(b), 76)]
    lines.append(b"")
    return b"\n".join(lines).decode("ascii")


def _split(blob: bytes | bytearray | memoryview) -> tuple[str, memoryview]:
    view = memoryview(blob)
    if len(view) < 3 or view[2] != 0x0A:
        raise SerializationError("a binary item must start with a two-character identifier "
                                 "and a newline")
    try:
        ident = bytes(view[:2]).decode("ascii")
    except UnicodeDecodeError:
        raise SerializationError("a binary item's identifier is not text") from None
    return ident, view[3:]


def to_binary(item: str) -> bytes:
    """The binary form of a text item (SerializationError if it is malformed)."""
    if len(item) < 3 or item[2] != "\n":
        raise SerializationError(f"malformed serialized item {item[:20]!r}")
    ident, body = item[:2], item[3:]
    if ident in BASE64_IDS:
        try:
            raw = binascii.a2b_base64(body)
        except (binascii.Error, ValueError) as e:
            raise SerializationError(f"bad base64 in a {ident!r} item: {e}") from None
    else:
        raw = body.encode()
    return ident.encode() + b"\n" + raw


def to_text(blob: bytes | bytearray | memoryview) -> str:
    """The text (wire) form of a binary item (SerializationError if malformed)."""
    ident, body = _split(blob)
    if ident in BASE64_IDS:
        return ident + "\n" + mime_b64(body)
    try:
        return ident + "\n" + bytes(body).decode()
    except UnicodeDecodeError:
        raise SerializationError(f"a {ident!r} item is not UTF-8 text") from None


def size(blob: bytes | memoryview) -> int:
    """Bytes of data a binary item carries (what the payload limits count)."""
    return max(0, len(blob) - 3)


# ------------------------------------------------------ direct (de)serialize
#: objects :func:`_data_only` looks at before it gives dill the value
SCAN_BUDGET = 256
_SCALARS = (type(None), bool, int, float, complex, str, bytes, bytearray)


def _data_only(obj: Any, budget: list[int]) -> bool:
    """Builtin data and numpy arrays (not of objects) only, in at most
    ``budget`` objects: what the standard pickle writes as dill would, much
    faster (dill's pure-Python pickler walks the containers around an array:
    ~18 ms for a 10 MiB array in a tuple, against ~2 ms)."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if isinstance(obj, _SCALARS):
        return type(obj) in _SCALARS
    if type(obj) in (list, tuple, set, frozenset):
        return all(_data_only(x, budget) for x in obj)
    if type(obj) is dict:
        return all(_data_only(k, budget) and _data_only(v, budget) for k, v in obj.items())
    if type(obj).__module__ == "numpy":
        return getattr(getattr(obj, "dtype", None), "hasobject", True) is False
    return False


def dumps(obj: Any) -> bytes:
    """``obj`` in the binary form of the ``00`` strategy (pickled data),
    without ever making its text form: the standard pickle (protocol 5) for
    builtin data and numpy arrays, written after the identifier (no copy to
    prepend it); dill for the rest, as
    :class:`~funcx.serialize.strategies.DillDataBase64` does."""
    if _data_only(obj, [SCAN_BUDGET]):
        buf = io.BytesIO()
        buf.write(b"00\n")
        try:
            pickle.Pickler(buf, protocol=5).dump(obj)
            return buf.getvalue()
        except Exception:  # noqa: BLE001 - dill tries what pickle cannot
            pass
    return b"00\n" + dill.dumps(obj)


def loads(blob: bytes | bytearray | memoryview, serializer: Any = None) -> Any:
    """The value of a binary item.  ``serializer`` (a FuncXSerializer) applies
    its allow-list and handles the text strategies; the ``00`` data strategy
    is read straight from the bytes: by the standard unpickler first (dill's
    copies the data into a file object and takes about twice as long on a
    large array), then by dill for what only dill resolves."""
    ident, body = _split(blob)
    if serializer is not None and serializer.allowed is not None \
            and ident not in serializer.allowed:
        return serializer.deserialize(to_text(blob))  # refused there, with its message
    if ident == "00":
        try:
            return pickle.loads(body)
        except Exception:  # noqa: BLE001 - dill knows more, and says what is wrong
            pass
        try:
            return dill.loads(bytes(body))
        except Exception as e:
            raise SerializationError(f"cannot deserialize '00' data: {type(e).__name__}: {e}") \
                from e
    text = to_text(blob)
    if serializer is None:
        from funcx.serialize.facade import FuncXSerializer

        serializer = FuncXSerializer()
    return serializer.deserialize(text)
