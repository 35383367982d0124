"""The endpoint's side of the binary path (issue 20): large task inputs and
results travel as raw bytes (*blobs*, :mod:`funcx.serialize.binary`), never
as base64 text, and are not copied at each hop.

* Agent, reading: a task whose payload holds reference items ``bb\\n<bid>``
  gets the blobs ``fx:ep:{eid}:blob:{bid}`` attached (``Task.blobs``, in the
  order of the references; one MGET per dispatch) — :class:`InputBlobs`.  A
  missing blob fails that task alone with ``BLOB_MISSING``; a blob serialized
  with a strategy outside the endpoint's allow-list fails it with
  ``SERIALIZER_NOT_ALLOWED``.  The keys are remembered per task-stream entry
  and deleted in the transaction that acknowledges the entry.
* Sockets: blobs are extra ZeroMQ frames (funcx.protocol.messages), sent with
  ``copy=False`` and received as memoryviews of the frames (:func:`send`,
  :func:`recv`).
* Worker: :func:`arguments` puts each blob's value in its reference's place;
  :func:`serialize_result` makes a default-strategy result's binary form
  once and, when it is large, sends it as the result's blob with ``data`` =
  ``bb\\n<task_id>``.
* Agent, writing: :func:`result_blobs` says which result blobs to SET (under
  the endpoint's prefix, before the results entry that names them).
* Redis: :func:`redis_options` has the agent's clients send a blob without
  copying it into one string first.
"""
from __future__ import annotations

import codecs
import os
import pickle
import threading
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any

import zmq

from funcx.errors import BlobMissing, SerializationError, SerializerNotAllowed
from funcx.protocol import keys
from funcx.protocol.error_codes import SERIALIZER_NOT_ALLOWED
from funcx.protocol.messages import Result, Task
from funcx.sdk.limits import serialized_bytes
from funcx.serialize import binary
from funcx.serialize.buffers import pack_buffers, unpack_buffers
from funcx.serialize.strategies import _plain  # the test binary.dumps makes

#: frames at least this long are received as a view of the frame, not copied
#: (pyzmq's own copy threshold: below it a copy is cheaper than a Frame)
LARGE_FRAME = 64 * 1024


# ------------------------------------------------------------------ sockets
#: plain ints: pyzmq's recv_multipart / send_multipart combine its enum flags
#: once per frame (an enum object each, a few microseconds per message)
_SNDMORE = int(zmq.SNDMORE)


def recv(sock: zmq.Socket, flags: int = 0) -> list[Any]:
    """One multipart message: small frames as bytes, large ones as
    memoryviews of the received frames (no copy)."""
    f = sock.recv(flags, copy=False)
    out = [f.bytes if len(f) < LARGE_FRAME else f.buffer]
    while f.more:
        f = sock.recv(flags, copy=False)
        out.append(f.bytes if len(f) < LARGE_FRAME else f.buffer)
    return out


def send(sock: zmq.Socket, frames: list[Any], flags: int = 0) -> None:
    """Send ``frames`` as one message; large ones are handed to ZeroMQ
    without a copy."""
    for frame in frames:  # as send_multipart: a bad frame fails before any is sent
        if not isinstance(frame, (bytes, memoryview, zmq.Frame)):
            memoryview(frame)
    flags = int(flags)
    more, last = flags | _SNDMORE, len(frames) - 1
    for i, frame in enumerate(frames):
        sock.send(frame, more if i < last else flags, copy=False)


def command_packer() -> Any:
    """A redis-py command packer that hands a large value (a blob) to the
    socket as it is, and packs every other command with hiredis as usual
    (hiredis copies a 10 MiB SET value into one string: ~18 ms of CPU, against
    ~1.4 ms).  None where redis-py lacks these classes (its default then)."""
    try:
        from redis.connection import (
            HIREDIS_AVAILABLE,
            Encoder,
            HiredisRespSerializer,
            PythonRespSerializer,
        )
    except ImportError:
        return None
    plain = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
    fast = HiredisRespSerializer() if HIREDIS_AVAILABLE else plain

    class _Packer:
        def pack(self, *args: Any) -> Any:
            for a in args:
                if isinstance(a, (bytes, memoryview)) and len(a) >= LARGE_FRAME:
                    return plain.pack(*args)
            return fast.pack(*args)

    return _Packer()


def redis_options(for_blobs: bool = False) -> dict[str, Any]:
    """Connection options for the agent's clients (see :func:`command_packer`);
    ``for_blobs``: for the client that reads blobs (bytes, 1 MiB socket reads)."""
    packer = command_packer()
    options: dict[str, Any] = {"command_packer": packer} if packer is not None else {}
    if for_blobs:
        options.update(decode_responses=False, socket_read_size=1 << 20)
    return options


# ------------------------------------------------------------ references
def refs(payload: str) -> list[str]:
    """The names of the reference items of a packed payload, in order
    (SerializationError for a malformed one)."""
    if binary.REF_PREFIX not in payload:  # the common case, checked in C
        return []
    try:
        buffers = unpack_buffers(payload)
    except (ValueError, SerializationError):
        return []  # malformed: the worker reports it as such
    return [binary.ref_name(b) for b in buffers if binary.is_ref(b)]


def arguments(task: Task, serializer: Any) -> tuple[Any, Any]:
    """The task's ``(args, kwargs)``: each item deserialized, the k-th
    reference item replaced by the value of ``task.blobs[k]``."""
    items = unpack_buffers(task.payload)
    if len(items) != 2:
        raise SerializationError(f"a task payload holds 2 items (args, kwargs), not {len(items)}")
    values, k = [], 0
    for item in items:
        if binary.is_ref(item):
            if k >= len(task.blobs):
                raise SerializationError("the payload names more blobs than the task carries")
            values.append(binary.loads(task.blobs[k], serializer))
            k += 1
        else:
            values.append(serializer.deserialize(item))
    if k != len(task.blobs):
        raise SerializationError("the task carries blobs its payload does not name")
    return values[0], values[1]


# ------------------------------------------------------------- the agent
class InputBlobs:
    """Input blobs of the tasks in flight: noted when their task-stream entry
    is read, fetched at dispatch, deleted with the entry's acknowledgement."""

    def __init__(self, endpoint_id: str, allowed_serializers: frozenset[str] | None = None):
        self.endpoint_id = endpoint_id
        self.allowed = allowed_serializers
        #: task-stream entry id -> the blob keys its tasks name
        self.of_entry: dict[str, list[str]] = {}
        self.lock = threading.Lock()  # the reader notes, the writer takes

    def key(self, name: str) -> str:
        return keys.ep_blob(self.endpoint_id, name)

    def wanted(self, tasks: Iterable[Task]) -> tuple[dict[str, list[str]], dict[str, str]]:
        """The blob keys each task needs (tasks with none left out) and the
        tasks whose payload holds a malformed reference (id -> why)."""
        need: dict[str, list[str]] = {}
        bad: dict[str, str] = {}
        for t in tasks:
            try:
                names = refs(t.payload)
            except SerializationError as e:
                bad[t.task_id] = str(e)
                continue
            if names:
                need[t.task_id] = [self.key(n) for n in names]
        return need, bad

    def note_entries(self, entries: list) -> None:
        """Remember the blob keys each task-stream entry just read names (every
        task's, whether it will run or not), to delete them with its
        acknowledgement.  Entries without a reference cost one substring search."""
        for entry_id, fields in entries:
            packed = (fields or {}).get("payloads") or (fields or {}).get("payload")
            if not isinstance(packed, str) or binary.REF_PREFIX not in packed:
                continue
            try:
                payloads = unpack_buffers(packed) if "payloads" in fields else [packed]
            except (ValueError, SerializationError):
                continue  # malformed: the agent drops the entry
            found: list[str] = []
            for payload in payloads:
                try:
                    found += [self.key(n) for n in refs(payload)]
                except SerializationError:
                    continue  # a malformed reference names no key
            if found:
                with self.lock:
                    self.of_entry[entry_id] = found

    def attach(self, tasks: list[Task], mget: Callable[[list[str]], list[Any]]
               ) -> tuple[list[Task], list[Result]]:
        """Fetch (``mget``: one MGET of a binary client) and attach the blobs
        the tasks name.  The tasks ready to run, and failures for those whose
        blobs are missing or refused."""
        from endpoint.execute import failure

        need, bad = self.wanted(tasks)
        if not need and not bad:
            return tasks, []
        flat = [k for ks in need.values() for k in ks]
        values = dict(zip(flat, mget(flat))) if flat else {}
        ready: list[Task] = []
        failed: list[Result] = []
        for t in tasks:
            wanted = need.get(t.task_id, [])
            if t.task_id in bad:
                err = BlobMissing(
                    f"the task's payload holds a malformed blob reference: {bad[t.task_id]}")
                failed.append(failure(t, err, error_code=err.code))
                continue
            if not wanted:
                ready.append(t)
                continue
            blobs = [values.get(k) for k in wanted]
            missing = [k.rsplit(":", 1)[1] for k, b in zip(wanted, blobs) if b is None]
            refused = self._refusal(blobs)
            if missing:
                err = BlobMissing(
                    f"input blob(s) {', '.join(missing)} of this task were gone when the "
                    f"endpoint came to run it (expired or deleted); submit the task again")
                failed.append(failure(t, err, error_code=err.code))
            elif refused:
                failed.append(failure(t, SerializerNotAllowed(refused),
                                      error_code=SERIALIZER_NOT_ALLOWED))
            else:
                t.blobs = blobs
                ready.append(t)
        return ready, failed

    def _refusal(self, blobs: list[Any]) -> str | None:
        """Why a blob breaks the endpoint's allow-list of serializers, or None."""
        if self.allowed is None:
            return None
        from funcx.serialize.choice import refusal

        for b in blobs:
            if b is not None and len(b) >= 3:
                header = bytes(b[:3]).decode("ascii", "replace")  # "<id>\n"
                why = refusal(pack_buffers([]), pack_buffers([header]), self.allowed)
                if why:
                    return why
        return None

    def take(self, entry_ids: Iterable[str]) -> list[str]:
        """The blob keys of these entries (being acknowledged), forgotten here."""
        out: list[str] = []
        if self.of_entry:
            with self.lock:
                for e in entry_ids:
                    out.extend(self.of_entry.pop(e, ()))
        return out


def result_blobs(results: list[Result]) -> list[tuple[str, Any]]:
    """``(task_id, blob)`` to store at ``ep_blob(eid, task_id)`` for these
    results.  Only a success whose data is the reference to its own task id
    and that carries exactly one blob has one; anything else a manager sent is
    written as it is, and the service fails a reference it cannot resolve
    (RESULT_BLOB_MISSING)."""
    return [(r.task_id, r.blobs[0]) for r in results
            if r.blobs and len(r.blobs) == 1 and r.status == "success"
            and r.data == binary.ref(r.task_id)]


# ------------------------------------------------------------ the worker
@lru_cache(maxsize=64)
def _default_first(first: str) -> bool:
    from funcx.serialize.choice import StrategyChoiceError, resolve

    try:
        return resolve(first).identifier == "00"
    except StrategyChoiceError:
        return False


def binary_result(result_serializers: list[str]) -> bool:
    """Whether a result goes through the binary form: the default data
    strategy ``00`` (no ``result_serializers``, or DillDataBase64 first)."""
    return not result_serializers or _default_first(result_serializers[0])


_MIN_BYTES: dict[str | None, int] = {}


def _dumps(value: Any) -> bytes:
    """``binary.dumps(value)``, with its common case (small plain data) first."""
    if _plain(value, [1000]):
        try:
            return b"00\n" + pickle.dumps(value, protocol=5)
        except Exception:  # noqa: BLE001 - binary.dumps tries dill
            pass
    return binary.dumps(value)


def _blob_min_bytes() -> int:
    """FUNCX_BLOB_MIN_BYTES, parsed once per value (this runs for every result)."""
    raw = os.environ.get("FUNCX_BLOB_MIN_BYTES")
    value = _MIN_BYTES.get(raw)
    if value is None:
        value = _MIN_BYTES[raw] = binary.blob_min_bytes()
    return value


def serialize_result(value: Any, result_serializers: list[str], task_id: str,
                     text: Callable[[Any, list[str]], str]) -> tuple[str, list[Any], int]:
    """``(data, blobs, size)`` of a success: with the default strategy, the
    binary form made once (``binary.dumps``), sent as the result's blob with
    ``data`` = ``bb\\n<task_id>`` when it is at least FUNCX_BLOB_MIN_BYTES,
    else as its text form; other strategies: ``text(value, result_serializers)``.
    ``size``: the decoded bytes FUNCX_MAX_RESULT_BYTES bounds."""
    if binary_result(result_serializers):
        try:
            raw = _dumps(value)
        except Exception:  # noqa: BLE001 - the text path tries the other strategies
            raw = None
        if raw is not None:
            size = binary.size(raw)
            if size >= _blob_min_bytes():
                return binary.ref(task_id), [raw], size
            # binary.to_text's "00" text (MIME base64), without its checks: raw is ours
            return "00\n" + codecs.encode(raw[3:], "base64").decode(), [], size
    data = text(value, result_serializers)
    return data, [], serialized_bytes(data)
