"""Task groups: membership, and completion events by long-poll (result push)."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from backend.api_errors import bad_request, not_found
from backend.auth import current_user
from backend.routes.common import tasks, valid_uuid
from backend.store.tasks import document
from funcx.defaults import setting

bp = Blueprint("taskgroups", __name__)


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
    if not all(part.isdigit() for part in after.split("-", 1)):
        raise bad_request("after must be a stream id such as 0 or 1700000000000-0")
    try:
        timeout = min(float(request.args.get("timeout", "0")), float(setting("LONGPOLL_MAX_S")))
    except ValueError:
        raise bad_request("timeout must be a number of seconds") from None
    events = tasks().events_after(tg, after, int(max(timeout, 0) * 1000))
    last = events[-1][0] if events else after
    tids = list(dict.fromkeys(f["task_id"] for _, f in events))
    recs = tasks().records(tids)
    tasks().mark_fetched([r for r in recs if r])
    return jsonify({"taskgroup_id": tg, "last_id": last,
                    "tasks": [document(r) for r in recs if r]})
