"""Submit tasks: v3 (per endpoint) and the 1.0 v2 triples.

Everything is validated before anything is queued, so a refused request
(4xx) never leaves a task behind; the public SDKs retry on 429/5xx.
"""
from __future__ import annotations

import json
import re
import uuid

from flask import Blueprint, jsonify, request

from backend.api_errors import ApiError, bad_request, too_large
from backend.auth import current_user
from backend.routes.common import (check_endpoint, check_function, field, json_body, redis,
                                   tasks, valid_uuid)
from funcx.defaults import setting
from funcx.protocol import keys

bp = Blueprint("submit", __name__)


def _task_group(raw) -> str:
    """The request's task group, or a new one (ownership is checked in _queue)."""
    return valid_uuid(raw, "task_group_id") if raw else str(uuid.uuid4())


def _check_payloads(payloads: list) -> None:
    limit = int(setting("MAX_PAYLOAD_BYTES"))
    for p in payloads:
        if not isinstance(p, str):
            raise bad_request("each task payload must be a string (the serialized arguments)")
        if len(p) > limit:
            raise too_large(f"a task payload of {len(p)} bytes exceeds the limit of {limit} bytes")


def _lookup(eid: str, fids: list[str], tg: str) -> tuple:
    """Everything a submit checks, in one round trip to Redis."""
    with redis().pipeline(transaction=False) as p:
        p.hgetall(keys.endpoint(eid))
        p.smembers(keys.endpoint_allowed(eid))
        p.hget(keys.task_group(tg), "owner")
        for fid in fids:
            p.hgetall(keys.function(fid))
        ep, allowed, tg_owner, *fns = p.execute()
    return ep or None, allowed, tg_owner, [f or None for f in fns]


IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _idempotency_key() -> str | None:
    """The client's ``Idempotency-Key`` header: a retried submit with the same
    key queues nothing new and is answered with the first one's task ids."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise bad_request("Idempotency-Key must be 1-128 letters, digits or . _ : -")
    return key


def _queue(user: str, eid: str, tg: str, by_function: dict[str, list[str]],
           resource_specification: dict | None, request_key: str | None = None
           ) -> dict[str, list[str]]:
    """Validate one endpoint's tasks and queue them in one transaction."""
    eid = valid_uuid(eid, "endpoint id")
    fids = {raw: valid_uuid(raw, "function id") for raw in by_function}
    ep, allowed, tg_owner, fn_recs = _lookup(eid, list(fids.values()), tg)
    check_endpoint(ep, eid, user)
    if tg_owner is not None and tg_owner != user:
        raise ApiError(404, "TASK_GROUP_NOT_FOUND", f"task group {tg} not found")
    codes, containers, items, order = {}, {}, [], []
    for (fid_raw, payloads), fn in zip(by_function.items(), fn_recs):
        fid = fids[fid_raw]
        check_function(fn, fid, user)
        if allowed and fid not in allowed:
            raise ApiError(403, "FUNCTION_NOT_ALLOWED",
                           f"function {fid} is not allowed on endpoint {eid}")
        _check_payloads(payloads)
        codes[fid] = fn["function_code"]
        if fn.get("container_uuid"):
            containers[fid] = fn["container_uuid"]
        items += [(fid, p) for p in payloads]
        order.append((fid_raw, len(payloads)))
    specs = {}
    for cid in set(containers.values()):
        rec = redis().hgetall(keys.container(cid))
        if rec:
            specs[cid] = json.dumps({"type": rec.get("type"), "location": rec.get("location")})
    tids = tasks().submit(user, eid, tg, items, codes, containers, resource_specification, specs,
                          request_key=request_key)
    if len(tids) != len(items):
        raise ApiError(409, "IDEMPOTENCY_KEY_REUSED",
                       "this Idempotency-Key was used for a different submit; use a new key")
    out, i = {}, 0
    for fid_raw, n in order:
        out[fid_raw] = tids[i:i + n]
        i += n
    return out


@bp.post("/v3/endpoints/<eid>/submit")
def submit_v3(eid: str):
    body = json_body()
    by_function = field(body, "tasks", dict, required=True)
    for fid, payloads in by_function.items():
        if not isinstance(payloads, list):
            raise bad_request(f"tasks[{fid!r}] must be a list of payloads")
    user = current_user()
    tg = _task_group(field(body, "task_group_id", str, default=None))
    spec = field(body, "resource_specification", dict, default=None)
    field(body, "user_endpoint_config", dict, default=None)
    ids = _queue(user, eid, tg, by_function, spec, _idempotency_key())
    return jsonify({"request_id": str(uuid.uuid4()), "task_group_id": tg,
                    "endpoint_id": valid_uuid(eid, "endpoint id"), "tasks": ids})


@bp.post("/v2/submit")
def submit_v2():
    body = json_body()
    triples = field(body, "tasks", list, required=True)
    user = current_user()
    tg = _task_group(field(body, "task_group_id", str, default=None))
    owner = tasks().task_group_owner(tg)
    if owner is not None and owner != user:  # refuse the whole request, not task by task
        raise ApiError(404, "TASK_GROUP_NOT_FOUND", f"task group {tg} not found")
    for t in triples:
        if not (isinstance(t, list) and len(t) >= 3 and all(isinstance(x, str) for x in t[:3])):
            raise bad_request("each task must be [function_id, endpoint_id, payload]")
    _check_payloads([t[2] for t in triples])  # a 413 refuses the whole request: before any queueing
    # group by endpoint, remembering each task's position to answer in order
    per_ep: dict[str, dict[str, list[str]]] = {}
    slots: dict[str, dict[str, list[int]]] = {}
    for pos, (fid, eid, payload, *_) in enumerate(triples):
        per_ep.setdefault(eid, {}).setdefault(fid, []).append(payload)
        slots.setdefault(eid, {}).setdefault(fid, []).append(pos)
    results: list[dict | None] = [None] * len(triples)
    # one (endpoint, function) group at a time, so a bad function id fails
    # only its own tasks, not the other tasks bound for the same endpoint
    for eid, by_function in per_ep.items():
        for fid, payloads in by_function.items():
            positions = slots[eid][fid]
            try:
                ids = _queue(user, eid, tg, {fid: payloads}, None)
            except ApiError as e:
                if e.status == 413:
                    raise
                for pos in positions:
                    results[pos] = {"status": "Failed", "http_status_code": e.status,
                                    "code": e.code, "reason": e.message}
                continue
            for pos, tid in zip(positions, ids[fid]):
                results[pos] = {"status": "Success", "task_uuid": tid, "http_status_code": 200}
    return jsonify({"response": "batch", "task_group_id": tg, "results": results})
