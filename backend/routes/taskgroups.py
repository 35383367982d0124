"""Task groups: membership, and completion events by long-poll (result push)."""
from __future__ import annotations

import math
import re
import time

from flask import Blueprint, jsonify, request

from backend.api_errors import bad_request, not_found
from backend.auth import current_user
from backend.routes.common import tasks, valid_uuid
from backend.store.tasks import document
from funcx.defaults import setting

bp = Blueprint("taskgroups", __name__)
STREAM_ID = re.compile(r"[0-9]{1,19}(-[0-9]{1,19})?")
XREAD_SLICE_MS = 2000


def _owned(tg: str) -> str:
    tg = valid_uuid(tg, "task group id")
    if tasks().task_group_owner(tg) != current_user():
        raise not_found("task_group", tg)
    return tg


@bp.get("/v2/taskgroup/<tg>")
def get_taskgroup(tg: str):
    tg = _owned(tg)
    tids = tasks().task_group_tasks(tg)
    recs = tasks().records(tids)
    return jsonify({"taskgroup_id": tg, "tasks": [
        {"id": tid, "created_at": rec.get("created_at")} for tid, rec in zip(tids, recs) if rec]})


@bp.get("/v2/taskgroup/<tg>/events")
def taskgroup_events(tg: str):
    """Terminal task documents of the group completed after stream id ``after``
    (``0`` for all, ``$`` for none: just the current end), waiting up to
    ``timeout`` seconds for the first one."""
    tg = _owned(tg)
    after = request.args.get("after", "0")
    if after == "$":  # where the stream ends now: a safe cursor to wait from
        return jsonify({"taskgroup_id": tg, "last_id": tasks().events_last_id(tg), "tasks": []})
    if not STREAM_ID.fullmatch(after):  # what Redis takes: ASCII digits, 64-bit parts
        raise bad_request("after must be a stream id such as 0 or 1700000000000-0")
    try:
        timeout = float(request.args.get("timeout", "0"))
        if math.isnan(timeout):
            raise ValueError
    except ValueError:
        raise bad_request("timeout must be a number of seconds") from None
    deadline = time.monotonic() + max(0.0, min(timeout, float(setting("LONGPOLL_MAX_S"))))
    while True:  # block in slices shorter than the Redis client's socket timeout (5 s)
        left_ms = int((deadline - time.monotonic()) * 1000)
        events = tasks().events_after(tg, after, min(left_ms, XREAD_SLICE_MS))
        if events or left_ms <= XREAD_SLICE_MS:
            break
    last = events[-1][0] if events else after
    tids = list(dict.fromkeys(f["task_id"] for _, f in events))
    recs = tasks().fetch(tids, current_user())
    return jsonify({"taskgroup_id": tg, "last_id": last,
                    "tasks": [document(r) for r in recs if r]})
