"""Submit tasks: v3 (per endpoint) and the 1.0 v2 triples.

A submit is queued whole or refused whole, and never answered 5xx or 429
after anything was queued (the public SDKs retry on 429/5xx, POST included):

1. the number of tasks is capped (``MAX_TASKS_PER_SUBMIT``, 413
   ``TOO_MANY_TASKS``), counted before any payload is looked at;
2. everything is validated (endpoint, functions, payload sizes, the resource
   specification against the endpoint owner's limits) before anything is queued;
3. one Redis script (backend/store/quotas.py) checks the caller's quotas
   (429 ``QUOTA_QUEUED_TASKS`` / ``QUOTA_STORED_BYTES``) and queues every task,
   or writes nothing (a full store: 507 ``STORE_FULL``, backend/api_errors.py);
4. after it, only the answer is built, from values already in hand.

Fair sharing (backend/limits.py): an identity has at most
``SUBMIT_CONCURRENCY_PER_IDENTITY`` submits in progress per web process, and a
budget of tasks (``RATE_LIMIT_TASKS``), checked before the body is read and
charged with the submit's task count after validation, just before queueing;
either refuses with 429 ``RATE_LIMITED`` and Retry-After, nothing queued.

Task-group ids (no existence oracle).  A client may name the task group of a
submit (the public SDKs mint the id of a new group themselves).  An id nobody
holds becomes the caller's group.  An id another user holds is *not* refused:
that would tell the caller the group exists.  The caller gets a private group
under the same id instead (``quotas.alias``: stored under a key derived from the
caller and the id, reached through the same id on every task-group route), so
the answer — 200, the id echoed, tasks queued, the group then listing only the
caller's tasks — is the same as for an id never seen.  Only an id the caller
holds adds to an existing group.
"""
from __future__ import annotations

import json
import logging
import re
import uuid

from flask import Blueprint, g, jsonify, request

from backend.api_errors import ApiError, bad_request
from backend.auth import current_user
from backend.limits import (
    charge_tasks,
    check_payload,
    check_task_budget,
    payload_limit,
    submit_slot,
)
from backend.multiuser import check_submit
from backend.routes import blobs as blob_inputs
from backend.routes.common import check_endpoint, check_function, field, json_body, redis, tasks, valid_uuid
from backend.store import containers as ctr_store
from backend.store import endpoints as ep_store
from backend.store.quotas import Batch, Refused
from funcx.defaults import setting
from funcx.protocol import error_codes
from funcx.protocol.messages import (
    NodesOverLimit,
    ProtocolError,
    check_within_limits,
    endpoint_limits,
    resource_specification,
)
from funcx.protocol.retry import RetryPolicyError, retry_policy
from funcx.serialize.choice import StrategyChoiceError, import_paths

bp = Blueprint("submit", __name__)
log = logging.getLogger(__name__)


def _task_group(raw) -> str:
    """The request's task group, or a new one (see the module docstring)."""
    return valid_uuid(raw, "task_group_id") if raw else str(uuid.uuid4())


def _check_count(n: int) -> None:
    cap = int(setting("MAX_TASKS_PER_SUBMIT"))
    if n > cap:
        raise ApiError(413, error_codes.TOO_MANY_TASKS,
                       f"this submit has {n} tasks; the service takes at most {cap} per request: "
                       "split the batch (the funcX SDK does this itself)")


def _resource_spec(raw) -> dict:
    """The submitter's resource specification, decoded (400 naming the field)."""
    try:
        return resource_specification(raw)
    except ProtocolError as e:
        raise bad_request(f"{e}", error_codes.RESOURCE_SPEC_INVALID) from None


def _check_limits(spec: dict, ep: dict, eid: str) -> None:
    """The endpoint owner's limits win: refuse a specification above them."""
    if not spec:
        return
    try:
        limits = endpoint_limits(json.loads(ep.get("limits") or "{}"))
    except (ValueError, ProtocolError):  # a bad record: log it, bound nothing
        log.warning("endpoint %s has unreadable limits %r", eid, ep.get("limits"))
        return
    try:
        check_within_limits(spec, limits)
    except NodesOverLimit as e:
        raise bad_request(str(e), error_codes.MPI_NODES_EXCEEDED) from None
    except ProtocolError as e:
        raise bad_request(str(e), error_codes.RESOURCE_SPEC_OVER_LIMIT) from None


def _result_serializers(raw) -> list[str]:
    """The submit's ``result_serializers``: strategy import paths, checked by
    name (never imported) and made canonical; 400 RESULT_SERIALIZERS_INVALID
    naming the strategies known here."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise bad_request("result_serializers must be a list of strategy import paths",
                          error_codes.RESULT_SERIALIZERS_INVALID)
    try:
        return import_paths(raw)
    except StrategyChoiceError as e:
        raise bad_request(f"result_serializers: {e}", error_codes.RESULT_SERIALIZERS_INVALID) \
            from None


def _retry_policy(raw) -> dict:
    """The submit's retry policy (funcx.protocol.retry), bounded: at most
    MAX_RETRIES retries and MAX_RETRY_ON exception names; 400
    RETRY_POLICY_INVALID naming the field."""
    try:
        return retry_policy(raw)
    except RetryPolicyError as e:
        raise bad_request(str(e), error_codes.RETRY_POLICY_INVALID) from None


def _check_payloads(payloads: list) -> None:
    limit = payload_limit()  # a payload no longer than the limit as sent is within it
    for i, p in enumerate(payloads):
        if not isinstance(p, str):
            raise bad_request("each task payload must be a string (the serialized arguments)")
        if len(p) > limit:
            check_payload(p, f"the input of task {i}")


IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _idempotency_key() -> str | None:
    """The client's ``Idempotency-Key`` header: a retried submit with the same
    key queues nothing and is answered with the first one's task ids."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        raise bad_request("Idempotency-Key must be 1-128 letters, digits or . _ : -")
    return key


def _prepare(user: str, eid: str, by_function: dict[str, list[str]], spec: dict,
             user_config: dict | None = None) -> Batch:
    """Validate one endpoint's tasks (nothing is written).  A multi-user
    endpoint's tasks carry the caller's identity (from the token) and their
    checked user_endpoint_config (backend.multiuser)."""
    eid = valid_uuid(eid, "endpoint id")
    fids = {raw: valid_uuid(raw, "function id") for raw in by_function}
    ep, allowed, fn_recs = ep_store.submit_view(redis(), eid, list(fids.values()))
    ep = check_endpoint(ep, eid, user)
    _check_limits(spec, ep, eid)
    batch = Batch(eid, [], {}, {}, spec or None, {})
    batch.identity, batch.user_endpoint_config = check_submit(
        ep, eid, {"id": g.identity.user_id, "username": g.identity.name}, user_config)
    for (fid_raw, payloads), fn in zip(by_function.items(), fn_recs):
        fid = fids[fid_raw]
        fn = check_function(fn, fid, user)
        if allowed and fid not in allowed:
            raise ApiError(403, error_codes.FUNCTION_NOT_ALLOWED,
                           f"function {fid} is not allowed on endpoint {eid}")
        _check_payloads(payloads)
        batch.codes[fid] = fn["function_code"]
        if fn.get("container_uuid"):
            batch.containers[fid] = fn["container_uuid"]
        batch.items += [(fid, p) for p in payloads]
    if batch.containers:
        batch.container_specs = ctr_store.image_specs(redis(), set(batch.containers.values()))
    return batch


def _queue(user: str, tg: str, batches: list[Batch], request_key: str | None = None) -> list[str]:
    """Queue every batch at once, or raise (nothing queued)."""
    try:
        tids = tasks().submit_batches(user, tg, batches, request_key)
    except Refused as e:
        if e.code in (error_codes.TASK_GROUP_NOT_FOUND, error_codes.ENDPOINT_NOT_FOUND):
            raise ApiError(404, e.code, e.message) from None
        raise ApiError(429, e.code, e.message, {"Retry-After": "30"}) from None
    if len(tids) != sum(len(b.items) for b in batches):
        raise ApiError(409, error_codes.IDEMPOTENCY_KEY_REUSED,
                       "this Idempotency-Key was used for a different submit; use a new key")
    return tids


@bp.post("/v3/endpoints/<eid>/submit")
def submit_v3(eid: str):
    user = current_user()
    with submit_slot(user):
        check_task_budget(user)  # before the body is read
        return _submit_v3(user, eid)


def _submit_v3(user: str, eid: str):
    body, frames = blob_inputs.submit_body()  # JSON, or a frames body (the binary path)
    by_function = field(body, "tasks", dict, required=True)
    for fid, payloads in by_function.items():
        if not isinstance(payloads, list):
            raise bad_request(f"tasks[{fid!r}] must be a list of payloads")
    n = sum(len(p) for p in by_function.values())
    _check_count(n)
    inputs = blob_inputs.bind(by_function, frames)  # blob references checked and renamed
    tg = _task_group(field(body, "task_group_id", str, default=None))
    spec = _resource_spec(field(body, "resource_specification", dict, default=None))
    user_config = field(body, "user_endpoint_config", dict, default=None)
    serializers = _result_serializers(body.get("result_serializers"))
    policy = _retry_policy(field(body, "retry_policy", dict, default=None))
    key = _idempotency_key()
    batch = _prepare(user, eid, by_function, spec, user_config)
    batch.result_serializers = serializers
    batch.retry_policy = policy
    batch.extra_bytes = inputs.extra_bytes(by_function)
    charge_tasks(user, n)
    with inputs.stored(user, batch.eid, key):
        tids = _queue(user, tg, [batch], key)
    # nothing below can fail: the answer is built from values in hand
    out, i = {}, 0
    for fid_raw, payloads in by_function.items():
        out[fid_raw] = tids[i:i + len(payloads)]
        i += len(payloads)
    return jsonify({"request_id": str(uuid.uuid4()), "task_group_id": tg,
                    "endpoint_id": batch.eid, "tasks": out})


@bp.post("/v2/submit")
def submit_v2():
    """The 1.0 submit: a task whose endpoint or function is refused gets an
    error entry of its own; all the others are queued in one script call (or,
    over a quota or with the store full, none is and the request is refused)."""
    user = current_user()
    with submit_slot(user):
        check_task_budget(user)  # before the body is read
        return _submit_v2(user)


def _submit_v2(user: str):
    body = json_body()
    triples = field(body, "tasks", list, required=True)
    _check_count(len(triples))
    tg = _task_group(field(body, "task_group_id", str, default=None))
    for t in triples:
        if not (isinstance(t, list) and len(t) >= 3 and all(isinstance(x, str) for x in t[:3])):
            raise bad_request("each task must be [function_id, endpoint_id, payload]")
    _check_payloads([t[2] for t in triples])  # a 413 refuses the whole request: before any queueing
    blob_inputs.bind({"": [t[2] for t in triples]}, [])  # no blob references: they need frames
    # group by endpoint, remembering each task's position to answer in order
    per_ep: dict[str, dict[str, list[str]]] = {}
    slots: dict[str, dict[str, list[int]]] = {}
    for pos, (fid, eid, payload, *_) in enumerate(triples):
        per_ep.setdefault(eid, {}).setdefault(fid, []).append(payload)
        slots.setdefault(eid, {}).setdefault(fid, []).append(pos)
    results: list[dict | None] = [None] * len(triples)
    batches: dict[str, Batch] = {}
    order: list[int] = []  # positions of the queued tasks, in queueing order
    # one (endpoint, function) group at a time, so a bad function id fails
    # only its own tasks, not the other tasks bound for the same endpoint
    for eid, by_function in per_ep.items():
        for fid, payloads in by_function.items():
            positions = slots[eid][fid]
            try:
                b = _prepare(user, eid, {fid: payloads}, {})
            except ApiError as e:
                for pos in positions:
                    results[pos] = {"status": "Failed", "http_status_code": e.status,
                                    "code": e.code, "reason": e.message}
                continue
            merged = batches.setdefault(b.eid, Batch(b.eid, [], {}, {}, None, {}))
            merged.items += b.items
            merged.codes.update(b.codes)
            merged.containers.update(b.containers)
            merged.container_specs.update(b.container_specs)
            order += positions
    # positions grouped per endpoint, in the order the batches are queued
    by_batch: dict[str, list[int]] = {}
    for pos in order:
        by_batch.setdefault(valid_uuid(triples[pos][1], "endpoint id"), []).append(pos)
    queued = [p for eid in batches for p in by_batch[eid]]
    charge_tasks(user, len(queued))
    tids = _queue(user, tg, list(batches.values())) if batches else []
    for pos, tid in zip(queued, tids):
        results[pos] = {"status": "Success", "task_uuid": tid, "http_status_code": 200}
    return jsonify({"response": "batch", "task_group_id": tg, "results": results})
