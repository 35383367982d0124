"""The binary path on the web side (issue 20; README "Large inputs and
results (the binary path)").

* Submit: ``POST /v3/endpoints/<id>/submit`` also takes an
  ``application/vnd.funcx.frames`` body (funcx.serialize.frames): its JSON
  header is the usual body, and a payload item ``bb\\n<k>`` stands for frame
  ``k``.  :func:`submit_body` decodes it and :func:`bind` checks every
  reference (400 ``FRAMES_INVALID``: a malformed reference, one to a missing
  frame, a frame referenced twice or never; a JSON body may hold none) and
  each task's size, frames included (413 ``TASK_PAYLOAD_TOO_LARGE``), and
  renames each reference to the Redis blob the frame will be stored as.
  :meth:`Inputs.stored` writes the blobs just before queueing and deletes
  them if the submit is refused.
* Results: every JSON route that returns task documents passes them through
  :func:`shown`: a blob result is answered as its text form (the public wire
  format, API.md), or, with ``blobs=1`` (the funcX SDK), left as
  ``bb\\n<size>``; the bytes then come from ``GET /v3/tasks/<id>/result``
  (``application/octet-stream``).
"""
from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import cast

from flask import Blueprint, Response, current_app, request

from backend.api_errors import ApiError, bad_request, not_found
from backend.auth import current_user
from backend.routes.common import _has_lone_surrogate, json_body, redis, tasks, valid_uuid
from backend.store import blobs as store
from funcx.defaults import setting
from funcx.errors import SerializationError
from funcx.protocol import error_codes
from funcx.protocol.states import TaskState
from funcx.serialize import binary, frames
from funcx.serialize.buffers import pack_buffers, unpack_buffers

bp = Blueprint("blobs", __name__)


def raw_redis():
    """The service's Redis for blobs: bytes, no copies (made once per app)."""
    ext = current_app.extensions
    if "funcx_redis_blobs" not in ext:
        ext["funcx_redis_blobs"] = store.blob_client(redis())
    return ext["funcx_redis_blobs"]


def _invalid(message: str) -> ApiError:
    return bad_request(message, error_codes.FRAMES_INVALID)


# --------------------------------------------------------------------- submit
def submit_body() -> tuple[dict, list[memoryview]]:
    """The submit's JSON body and its frames (none for a JSON body)."""
    ctype = (request.mimetype or "").lower()
    if ctype != frames.MEDIA_TYPE:
        return json_body(), []
    try:
        header, got = frames.decode(read_body())
    except frames.FramesError as e:
        raise _invalid(f"the frames body is malformed: {e}") from None
    if _has_lone_surrogate(header):  # as json_body: no Redis write could encode it
        raise bad_request("the request body has a string with a lone UTF-16 surrogate")
    return header, got


#: bytes asked of the server's body reader at a time (see read_body)
BODY_STEP = 4 << 20


def read_body() -> memoryview:
    """The request body, read in large steps into one buffer.  Werkzeug's
    ``get_data`` reads 64 KiB at a time, and gunicorn's reader copies the rest
    of its 1 MiB read-ahead again at each such step: about ten copies of every
    byte, a third of the web's CPU for a 100 MiB input (issue 20)."""
    n = request.content_length
    if n is None:  # chunked: werkzeug's reader
        return memoryview(request.get_data(cache=False))
    # 413 past MAX_CONTENT_LENGTH, before anything is allocated; werkzeug's
    # LimitedStream, a RawIOBase (typed as IO[bytes])
    stream = cast(io.RawIOBase, request.stream)
    view = memoryview(bytearray(n))
    pos = 0
    while pos < n:
        got = stream.readinto(view[pos:pos + BODY_STEP])
        if not got:  # werkzeug raised ClientDisconnected (400) already
            break
        pos += got
    return view[:pos]


@dataclass
class Inputs:
    """The frames of one submit, bound to blob ids (nothing stored yet)."""

    frames: list[memoryview] = field(default_factory=list)
    bids: list[str] = field(default_factory=list)  # one per frame
    #: bytes each task's frames add, per function (in the body's order)
    extra: dict[str, list[int]] = field(default_factory=dict)

    def extra_bytes(self, by_function: dict[str, list]) -> list[int]:
        """Frame bytes of each task in queueing order (function by function)."""
        if not self.frames:
            return []
        return [n for fid in by_function for n in self.extra[fid]]

    @contextmanager
    def stored(self, user: str, eid: str, request_key: str | None) -> Iterator[None]:
        """Write the blobs for the block's queueing; delete them if it raises.
        A replayed request (its Idempotency-Key answered already) stores
        nothing: the first request's tasks reference the first one's blobs."""
        r = raw_redis()
        if not self.frames or store.answered(r, user, request_key):
            yield
            return
        store.store_inputs(r, eid, list(zip(self.bids, self.frames)),
                           int(setting("TASK_TTL_S")))
        try:
            yield
        except BaseException:
            store.drop_inputs(r, eid, self.bids)
            raise


def _task_size(payload: str, sizes: list[int]) -> int:
    from funcx.sdk.limits import payload_bytes

    return payload_bytes(payload) + sum(sizes)


def bind(by_function: dict[str, list], got: list[memoryview]) -> Inputs:
    """Check every reference of the payloads against the frames ``got`` and
    rewrite it (in place) to the blob id its frame is stored under; 400
    FRAMES_INVALID naming the problem, 413 for a task over the payload limit.
    Pure: nothing is written."""
    inputs = Inputs(frames=list(got), bids=[uuid.uuid4().hex for _ in got])
    used = [False] * len(got)
    limit = int(setting("MAX_PAYLOAD_BYTES"))
    n = 0
    for fid, payloads in by_function.items():
        extra = inputs.extra.setdefault(fid, [])
        if not isinstance(payloads, list):
            continue  # refused by the caller's own checks
        for j, p in enumerate(payloads):
            sizes: list[int] = []
            if isinstance(p, str) and binary.REF_PREFIX in p:
                try:
                    items = unpack_buffers(p)
                except SerializationError:
                    items = []  # not packed buffers: opaque, no reference in it
                if any(binary.is_ref(it) for it in items):
                    payloads[j] = pack_buffers([_rebind(it, n, got, used, inputs, sizes)
                                                for it in items])
            extra.append(sum(sizes))
            if sizes and _task_size(payloads[j], sizes) > limit:
                sent = len(payloads[j].encode()) + sum(sizes) + 3 * len(sizes)
                raise ApiError(413, error_codes.TASK_PAYLOAD_TOO_LARGE,
                               f"the input of task {n} is {_task_size(payloads[j], sizes)} "
                               f"bytes serialized ({sent} bytes encoded as sent, mostly raw "
                               f"frames), over the service's limit of {limit} bytes "
                               "(FUNCX_MAX_PAYLOAD_BYTES, enforced by the funcX service: set "
                               "it in the environment of `funcx service start` on the service "
                               "host to raise it); or send less per task")
            n += 1
    never = [k for k, u in enumerate(used) if not u]
    if never:
        raise _invalid(f"frame {never[0]} is referenced by no task input "
                       f"({len(never)} unreferenced frame(s))")
    return inputs


def _rebind(item: str, task: int, got: list[memoryview], used: list[bool], inputs: Inputs,
            sizes: list[int]) -> str:
    if not binary.is_ref(item):
        return item
    name = item[len(binary.REF_PREFIX):]
    if not got:
        raise _invalid(f"the input of task {task} holds a blob reference {name[:20]!r}, but a "
                       f"JSON body carries no frames (send {frames.MEDIA_TYPE})")
    if not (name.isascii() and name.isdigit() and len(name) <= 12):
        raise _invalid(f"the input of task {task} holds a malformed blob reference "
                       f"{name[:20]!r} (a frame index, 0 to {len(got) - 1}, is expected)")
    k = int(name)
    if k >= len(got):
        raise _invalid(f"the input of task {task} references frame {k}, but the body has "
                       f"{len(got)} frame(s)")
    if used[k]:
        raise _invalid(f"frame {k} is referenced twice (task {task} again); each frame "
                       "belongs to one reference")
    used[k] = True
    sizes.append(binary.size(got[k]))
    return binary.ref(inputs.bids[k])


# -------------------------------------------------------------------- results
def wants_refs() -> bool:
    """Whether the caller asked for blob references (``blobs=1``: the funcX SDK)."""
    return request.args.get("blobs") == "1"


def shown(docs: list[dict], refs: bool | None = None) -> list[dict]:
    """``docs`` (task documents, changed in place) with each blob result as
    the caller sees it: its text form, or (``refs``) the reference; a blob
    that is gone makes the task show as failed with RESULT_BLOB_MISSING."""
    mine = [d for d in docs if isinstance(d.get("result"), str) and binary.is_ref(d["result"])]
    if not mine:
        return docs
    refs = wants_refs() if refs is None else refs
    tids = [d["task_id"] for d in mine]
    if refs:
        present = store.follow_record(raw_redis(), tids)
        for d, ok in zip(mine, present):
            if not ok:
                _gone(d)
        return docs
    for d, raw in zip(mine, store.result_bytes(raw_redis(), tids)):
        try:
            if raw is None:
                raise SerializationError("gone")
            d["result"] = binary.to_text(raw)
        except SerializationError:
            _gone(d)
    return docs


def _gone(doc: dict) -> None:
    doc.pop("result", None)
    doc["status"] = TaskState.FAILED.value
    doc["exception"] = store.missing_text(doc["task_id"], "is no longer held by the service")


@bp.get("/v3/tasks/<tid>/result")
def task_result(tid: str):
    """A task's blob result as its binary item (funcx.serialize.binary);
    404 TASK_NOT_FOUND for a task that is not the caller's or whose result is
    not a blob."""
    tid = valid_uuid(tid, "task id")
    user = current_user()
    rec = tasks().fetch([tid], user)[0]
    if not rec or rec.get("owner") != user or rec.get("status") != TaskState.SUCCESS.value \
            or not binary.is_ref(rec.get("result") or ""):
        raise not_found("task", tid)
    raw = store.result_bytes(raw_redis(), [tid])[0]
    if raw is None:
        raise not_found("task", tid)
    return Response(raw, mimetype="application/octet-stream")
