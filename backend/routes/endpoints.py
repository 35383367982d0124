"""Endpoint registration, listing, status, deletion and allowed functions."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, request

from backend.api_errors import bad_request
from backend.auth import current_user
from backend.multiuser import check_registration
from backend.routes.common import endpoint_for_user, field, json_body, redis, tasks, valid_name, valid_uuid
from backend.store import endpoints as ep_store
from funcx.protocol.error_codes import BAD_REQUEST
from funcx.protocol.messages import ProtocolError, endpoint_limits

bp = Blueprint("endpoints", __name__)

#: a name or display name: printable text, no control characters (a trailing
#: newline included: always ``fullmatch``, never ``match`` with ``$``)
def _register(eid: str | None):
    body = json_body()
    name = field(body, "endpoint_name", str, default="") or field(body, "display_name", str, default="")
    if not name:
        raise bad_request("missing field 'endpoint_name'")
    valid_name(name, "endpoint_name" if body.get("endpoint_name") else "display_name")
    display_name = field(body, "display_name", str, default="") or name
    valid_name(display_name, "display_name")
    try:
        limits = endpoint_limits(body.get("limits"))
    except ProtocolError as e:
        raise bad_request(f"field 'limits': {e}", BAD_REQUEST) from None
    metadata = field(body, "metadata", dict, default={})
    check_registration(metadata)  # a multi-user endpoint's rules and schema (400)
    allowed = field(body, "allowed_functions", list, default=None)
    if allowed is not None:
        allowed = [valid_uuid(f, "function id") for f in allowed]
    if eid is not None:
        eid = valid_uuid(eid, "endpoint id")
        if ep_store.get(redis(), eid) is not None:
            endpoint_for_user(eid, current_user(), write=True)
    info = ep_store.register(
        redis(), current_user(), current_app.extensions["funcx_redis_url"],
        eid=eid, name=name,
        display_name=display_name,
        metadata=metadata,
        public=field(body, "public", bool, default=False),
        allowed_functions=allowed, limits=limits,
    )
    return jsonify(info)


@bp.post("/v3/endpoints")
@bp.post("/v2/endpoints")
def register_new():
    body = json_body()
    return _register(body.get("endpoint_id") or body.get("endpoint_uuid"))


@bp.put("/v3/endpoints/<eid>")
def register_update(eid: str):
    return _register(eid)


@bp.get("/v2/endpoints")
@bp.get("/v3/endpoints")
def list_endpoints():
    role = request.args.get("role", "owner")
    if role not in ("owner", "any"):
        raise bad_request("role must be 'owner' or 'any'")
    recs = ep_store.list_for(redis(), current_user(), include_public=(role == "any"))
    return jsonify([ep_store.public_view(r) for r in recs])


@bp.get("/v2/endpoints/<eid>")
@bp.get("/v3/endpoints/<eid>")
def get_endpoint(eid: str):
    rec = endpoint_for_user(eid, current_user())
    view = ep_store.public_view(rec)
    view["status"] = ep_store.status(redis(), rec["uuid"])["status"]
    return jsonify(view)


@bp.get("/v2/endpoints/<eid>/status")
@bp.get("/v3/endpoints/<eid>/status")
def endpoint_status(eid: str):
    rec = endpoint_for_user(eid, current_user())
    st = ep_store.status(redis(), rec["uuid"])
    # what keeps its tasks waiting, as its agent reported it (see endpoint.block_health)
    st["details"].setdefault("problems", [])
    return jsonify(st)


@bp.delete("/v2/endpoints/<eid>")
@bp.delete("/v3/endpoints/<eid>")
def delete_endpoint(eid: str):
    rec = endpoint_for_user(eid, current_user(), write=True)
    queued = ep_store.delete(redis(), rec["uuid"], current_user())
    # only tasks whose records name this endpoint: its agent could have written
    # other endpoints' task ids into its own stream
    orphaned = [t for t, task in zip(queued, tasks().records(queued))
                if task and task.get("endpoint_id") == rec["uuid"]]
    if orphaned:
        tasks().fail(orphaned, "endpoint deleted",
                     f"EndpointDeleted: endpoint {rec['uuid']} was deleted before this task ran")
        ep_store.forget_outstanding(redis(), rec["uuid"])  # failing them counted it down
    return jsonify({"result": 302, "endpoint_id": rec["uuid"], "failed_tasks": len(orphaned)})


@bp.post("/v3/endpoints/<eid>/lock")
def lock_endpoint(eid: str):
    rec = endpoint_for_user(eid, current_user(), write=True)
    return jsonify({"endpoint_id": rec["uuid"], "lock_expiration": time.time() + 60})


@bp.get("/v3/endpoints/<eid>/allowed_functions")
def allowed_functions(eid: str):
    rec = endpoint_for_user(eid, current_user())
    fns = sorted(ep_store.allowed_functions(redis(), rec["uuid"]))
    return jsonify({"endpoint_id": rec["uuid"], "restricted": bool(fns), "functions": fns})


@bp.get("/v2/endpoints/<eid>/whitelist")
def get_whitelist(eid: str):
    rec = endpoint_for_user(eid, current_user())
    return jsonify({"status": "Success", "result": sorted(ep_store.allowed_functions(redis(), rec["uuid"]))})


@bp.post("/v2/endpoints/<eid>/whitelist")
def add_whitelist(eid: str):
    rec = endpoint_for_user(eid, current_user(), write=True)
    funcs = field(json_body(), "func", list, required=True)
    funcs = [valid_uuid(f, "function id") for f in funcs]
    result = ep_store.set_allowed(redis(), rec["uuid"], add=funcs)
    return jsonify({"status": "Success", "result": sorted(result)})


@bp.delete("/v2/endpoints/<eid>/whitelist/<fid>")
def delete_whitelist(eid: str, fid: str):
    rec = endpoint_for_user(eid, current_user(), write=True)
    result = ep_store.set_allowed(redis(), rec["uuid"], remove=[valid_uuid(fid, "function id")])
    return jsonify({"status": "Success", "result": sorted(result)})
