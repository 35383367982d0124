"""Task documents, one at a time or in a batch."""
from __future__ import annotations

import json

from flask import Blueprint, jsonify

from backend.api_errors import bad_request, not_found
from backend.auth import current_user
from backend.routes.blobs import shown
from backend.routes.common import field, json_body, redis, tasks, valid_uuid
from backend.store import endpoints as ep_store
from backend.store import quotas
from backend.store.tasks import as_seen_now, document, summary
from funcx.defaults import setting
from funcx.protocol import error_codes
from funcx.protocol.failure_text import error_line, error_type
from funcx.protocol.states import TaskState, is_terminal

bp = Blueprint("tasks", __name__)


@bp.get("/v2/tasks")
def list_tasks():
    """The caller's tasks, newest first: of one task group, or of the latest groups."""
    from flask import request

    try:
        limit = min(10_000, max(1, int(request.args.get("limit", 50))))
    except ValueError:
        raise bad_request("limit must be an integer") from None
    status = request.args.get("status")
    if status and status not in {s.value for s in TaskState}:
        raise bad_request(f"unknown status {status!r}")
    user = current_user()
    tg = request.args.get("task_group_id")
    if tg:
        tg = valid_uuid(tg, "task group id")
        mine = quotas.resolve_task_group(redis(), tg, user)  # the same 404 for others' and unknown ids
        if mine is None:
            raise not_found("task_group", tg)
        groups = [mine]
    else:
        groups = tasks().recent_task_groups(user, 20)
    rows: list[dict] = []
    seen: dict[str, list[dict]] = {}  # each endpoint's problems (offline?), looked up once
    for g in groups:
        tids = tasks().task_group_tasks(g, last=None if status else limit)
        for rec in reversed(tasks().records(tids)):
            if rec and rec.get("owner") == user and (not status or rec.get("status") == status):
                rows.append(with_problems(rec, listing_row(rec), seen))
        if len(rows) >= limit:
            break
    return jsonify({"tasks": rows[:limit]})


def listing_row(rec: dict) -> dict:
    """A task's row in ``GET /v2/tasks``: its summary, when it ran
    (``exec_start``/``exec_end``, epoch seconds, when its worker reported them)
    and, for a failed or cancelled task, its ``error`` line
    (``ValueError: too noisy``) and ``error_type`` (``ValueError``)."""
    row = summary(rec)
    try:
        details = json.loads(rec.get("details") or "{}")
    except ValueError:
        details = {}
    if isinstance(details, dict):
        for k in ("exec_start", "exec_end"):
            if isinstance(details.get(k), (int, float)):
                row[k] = details[k]
    if rec.get("status") in (TaskState.FAILED.value, TaskState.CANCELLED.value):
        row["error"] = error_line(rec.get("exception") or rec.get("reason"),
                                  default=str(rec.get("status")))
        row["error_type"] = error_type(row["error"])
    return row


@bp.get("/v2/tasks/<tid>")
def get_task(tid: str):
    tid = valid_uuid(tid, "task id")
    rec = tasks().fetch([tid], current_user())[0]
    if not rec or rec.get("owner") != current_user():
        raise not_found("task", tid)
    return jsonify(with_problems(rec, shown([document(rec)])[0], {}))


def with_problems(rec: dict, doc: dict, seen: dict[str, list[dict]]) -> dict:
    """``doc`` with, while the task waits, why: its endpoint's problems (e.g.
    blocks the provider refuses, or the endpoint is offline); ``seen`` caches
    them per endpoint for a batch."""
    eid = rec.get("endpoint_id")
    if eid and not is_terminal(doc.get("status", "")):
        if eid not in seen:
            seen[eid] = endpoint_problems(eid)
        # an offline endpoint's unfinished tasks are shown waiting for it (issue 16)
        as_seen_now(doc, not any(p.get("kind") == OFFLINE["kind"] for p in seen[eid]))
        if doc.get("status") in WAITING and seen[eid]:
            doc.setdefault("details", {})["problems"] = seen[eid]
    return doc


#: states in which a task waits on its endpoint (whose problems say why)
WAITING = frozenset({TaskState.WAITING_FOR_EP.value, TaskState.WAITING_FOR_NODES.value,
                     TaskState.WAITING_FOR_LAUNCH.value})


#: what a waiting task's details say when its endpoint's agent is not running
OFFLINE = {"kind": "endpoint_offline", "block": None, "since": None,
           "message": "the endpoint is offline (no heartbeat from its agent): tasks wait until "
                      "its owner starts it (`funcx-endpoint start`) and it reaches the service"}


def endpoint_problems(eid: str) -> list[dict]:
    """The problems the endpoint's agent last reported (its heartbeat's
    ``details.problems``), or that it is offline."""
    problems = ep_store.reported_problems(redis(), eid)
    if problems is None:  # offline since its agent's last heartbeat (None: never seen)
        return [{**OFFLINE, "since": ep_store.last_seen(redis(), eid)}]
    return problems


@bp.post("/v2/tasks/<tid>/cancel")
def cancel_task(tid: str):
    """Cancel a task that has not finished, queued or running (its endpoint kills
    the worker running it, now or when it comes back online); a no-op on
    finished ones (``"cancelled": false``)."""
    tid = valid_uuid(tid, "task id")
    rec = tasks().records([tid])[0]
    if not rec or rec.get("owner") != current_user():
        raise not_found("task", tid)
    cancelled = tasks().cancel(rec)
    rec = tasks().records([tid])[0]
    return jsonify({"task_id": tid, "cancelled": cancelled, "status": rec.get("status")})


@bp.post("/v2/tasks/cancel")
def cancel_tasks():
    """Cancel many tasks in one request (``{"task_ids": [...]}``, at most
    FUNCX_BATCH_STATUS_MAX): each answered ``{"cancelled", "status"}`` as by
    :func:`cancel_task`; an id the caller has no task of (unknown, or someone
    else's: the same answer) ``{"cancelled": false, "status": "unknown"}``."""
    tids = task_ids_field()
    user = current_user()
    recs = tasks().records(tids)
    mine = [rec for rec in recs if rec and rec.get("owner") == user]
    done = dict(zip([rec["task_id"] for rec in mine], tasks().cancel_many(mine)))
    now = dict(zip(tids, tasks().records(tids)))
    results: dict[str, dict] = {}
    for tid in tids:
        if tid in done:
            results[tid] = {"cancelled": done[tid], "status": now[tid].get("status")}
        else:
            results[tid] = {"cancelled": False, "status": "unknown", "reason": "unknown task id"}
    return jsonify({"results": results})


def task_ids_field() -> list[str]:
    """The body's ``task_ids``: a list of at most FUNCX_BATCH_STATUS_MAX task
    ids (400 ``TOO_MANY_TASK_IDS`` past it, ``BAD_REQUEST`` if malformed)."""
    ids = field(json_body(), "task_ids", list, required=True)
    most = int(setting("BATCH_STATUS_MAX"))
    if len(ids) > most:
        raise bad_request(f"at most {most} task ids per request (FUNCX_BATCH_STATUS_MAX): "
                          "split the list", error_codes.TOO_MANY_TASK_IDS)
    if not all(isinstance(t, str) for t in ids):
        raise bad_request("task_ids must be a list of strings")
    return list(dict.fromkeys(valid_uuid(t, "task id") for t in ids))


@bp.post("/v2/batch_status")
def batch_status():
    tids = task_ids_field()
    user = current_user()
    recs = tasks().fetch(tids, user)
    results: dict[str, dict] = {}
    problems: dict[str, list[dict]] = {}  # one lookup per endpoint
    for tid, rec in zip(tids, recs):
        if rec and rec.get("owner") == user:
            results[tid] = with_problems(rec, document(rec), problems)
        else:
            results[tid] = {"task_id": tid, "status": "unknown", "reason": "unknown task id"}
    shown(list(results.values()))  # blob results as text (or references: blobs=1)
    return jsonify({"response": "batch", "results": results})
