"""Task groups: membership, and completion events by long-poll (result push).

A task-group id names the caller's own group: the one they hold under that
id, or their private alias of an id another user holds (backend/store/quotas.py,
backend/routes/submit.py); any other id is 404, the same whether or not someone
else holds it.  Only the caller's tasks are ever returned.

Long-polls are bounded (backend/store/longpolls.py): past
``LONGPOLL_PER_IDENTITY`` open polls an identity gets 429 ``LONGPOLL_LIMIT``
with Retry-After; past ``WEB_LONGPOLL_THREADS`` waiting in one web process a
poll does not wait: it answers at once with what is there, or, with nothing
there, 429 ``LONGPOLL_LIMIT`` with Retry-After (so a client backs off instead of
spinning), and request threads always remain for everyone else.

Asked with ``Accept: text/event-stream``, the events route streams instead of
answering once (server-sent events; the SDK's side is funcx.sdk.event_stream):
each answer of the long-poll is a ``data:`` message as soon as its events are
in, and the request goes on until ``timeout``, so a client waiting on task
after task pays for one request, one authentication and one slot per
``timeout`` rather than per answer.  A comment line (a heartbeat) goes out
after each ``XREAD_SLICE_MS`` without events: the client sees the stream is
alive, and a client that has gone is noticed at that write, which ends the
stream and frees its slot.
"""
from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Iterator

import redis as redis_lib
from flask import Blueprint, Response, jsonify, request, stream_with_context

from backend.api_errors import ApiError, bad_request, not_found
from backend.auth import current_user
from backend.routes.blobs import shown
from backend.routes.common import redis, tasks, valid_uuid
from backend.store import longpolls
from backend.store.quotas import resolve_task_group
from backend.store.tasks import document
from funcx.defaults import setting
from funcx.protocol import error_codes
from funcx.protocol.events import HEARTBEAT, OPENED, STREAM_TYPE, data_message

bp = Blueprint("taskgroups", __name__)
log = logging.getLogger(__name__)
STREAM_ID = re.compile(r"[0-9]{1,19}(-[0-9]{1,19})?")
XREAD_SLICE_MS = 2000
#: Retry-After of a refused long-poll, drawn from this range so that refused
#: pollers do not all come back in the same instant
RETRY_AFTER_S = (1, 4)


def _owned(tg: str) -> tuple[str, str]:
    """(the id as the caller wrote it, normalized; the group it names for them)."""
    tg = valid_uuid(tg, "task group id")
    internal = resolve_task_group(redis(), tg, current_user())
    if internal is None:
        raise not_found("task_group", tg)
    return tg, internal


def _busy(why: str) -> ApiError:
    return ApiError(429, error_codes.LONGPOLL_LIMIT,
                    f"{why}; wait Retry-After seconds before polling again (or poll with a "
                    "short timeout)", {"Retry-After": str(random.randint(*RETRY_AFTER_S))})


@bp.get("/v2/taskgroup/<tg>")
def get_taskgroup(tg: str):
    tg, internal = _owned(tg)
    user = current_user()
    tids = tasks().task_group_tasks(internal)
    recs = tasks().records(tids)
    return jsonify({"taskgroup_id": tg, "tasks": [
        {"id": tid, "created_at": rec.get("created_at")} for tid, rec in zip(tids, recs)
        if rec and rec.get("owner") == user]})


@bp.get("/v2/taskgroup/<tg>/events")
def taskgroup_events(tg: str):
    """Terminal task documents of the group completed after stream id ``after``
    (``0`` for all, ``$`` for none: just the current end), waiting up to
    ``timeout`` seconds for the first one."""
    tg, internal = _owned(tg)
    user = current_user()
    after = request.args.get("after", "0")
    if after == "$":  # where the stream ends now: a safe cursor to wait from
        return jsonify({"taskgroup_id": tg, "last_id": tasks().events_last_id(internal),
                        "tasks": []})
    if not STREAM_ID.fullmatch(after):  # what Redis takes: ASCII digits, 64-bit parts
        raise bad_request("after must be a stream id such as 0 or 1700000000000-0")
    try:
        timeout = float(request.args.get("timeout", "0"))
        if math.isnan(timeout):
            raise ValueError
    except ValueError:
        raise bad_request("timeout must be a number of seconds") from None
    wait_s = max(0.0, min(timeout, float(setting("LONGPOLL_MAX_S"))))
    stream = wait_s > 0 and request.accept_mimetypes.best == STREAM_TYPE
    slot = None
    if wait_s > 0:
        slot = longpolls.Slot(redis(), user, wait_s)
        if not slot.taken:
            raise _busy(f"you have {int(setting('LONGPOLL_PER_IDENTITY'))} long-polls open "
                        "already, the most one identity may")
        if not slot.thread:  # this process's long-poll threads are all waiting: do not wait
            wait_s, stream = 0.0, False
    if stream and slot is not None:
        resp = Response(stream_with_context(_stream(internal, tg, user, after, wait_s)),
                        mimetype=STREAM_TYPE, headers={"Cache-Control": "no-store"})
        resp.call_on_close(slot.release)  # however it ends: done, client gone, an error
        return resp
    try:
        deadline = time.monotonic() + wait_s
        while True:  # block in slices shorter than the Redis client's socket timeout (5 s)
            left_ms = int((deadline - time.monotonic()) * 1000)
            events = tasks().events_after(internal, after, min(left_ms, XREAD_SLICE_MS))
            if events or left_ms <= XREAD_SLICE_MS:
                break
    finally:
        degraded = slot is not None and not slot.thread
        if slot is not None:
            slot.release()
    if degraded and not events:
        raise _busy("the service is busy with other long-polls")
    return jsonify(_answer(tg, user, after, events))


def _answer(tg: str, user: str, after: str, events: list) -> dict:
    """One answer: the caller's terminal task documents of ``events`` (read in
    one round trip, which starts their retention clock) and the cursor after them."""
    last = events[-1][0] if events else after
    tids = list(dict.fromkeys(f["task_id"] for _, f in events))
    recs = tasks().fetch(tids, user)
    return {"taskgroup_id": tg, "last_id": last,
            "tasks": shown([document(r) for r in recs if r and r.get("owner") == user])}


def _stream(internal: str, tg: str, user: str, after: str, wait_s: float) -> Iterator[bytes]:
    """The streamed events answer (in the request's context): a ``data:``
    message per batch of events as they come (the blocking XREAD is woken by
    the XADD itself), a heartbeat after each quiet slice, until ``wait_s``
    has passed.  A Redis failure ends the stream (logged); the client's next
    request gets the service's 503."""
    deadline = time.monotonic() + wait_s
    yield OPENED
    while True:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            return
        try:
            events = tasks().events_after(internal, after, min(left_ms, XREAD_SLICE_MS))
            answer = _answer(tg, user, after, events) if events else None
        except redis_lib.RedisError as e:
            log.warning("events stream of task group %s ended: %s", tg, type(e).__name__)
            return
        if answer is None:
            yield HEARTBEAT
            continue
        after = answer["last_id"]
        yield data_message(answer)
