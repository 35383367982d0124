"""Container records: a name, a type and an image location.

A container record is its owner's unless registered ``public``: anyone else
gets 404 for it, on read and when naming it at function registration, exactly
as for an id that does not exist.  (A function shared with others carries its
container along: the service copies the image spec for the endpoint at
submit, so a runner never needs to read the record.)"""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend.api_errors import bad_request, not_found
from backend.auth import current_user
from backend.routes.common import field, json_body, redis, valid_uuid
from backend.store import containers as ctr_store

bp = Blueprint("containers", __name__)
TYPES = ("docker", "singularity", "apptainer", "podman", "shifter")


@bp.post("/v2/containers")
def register_container():
    body = json_body()
    ctype = field(body, "type", str, required=True).lower()
    if ctype not in TYPES:
        raise bad_request(f"container type must be one of {', '.join(TYPES)}")
    location = field(body, "location", str, required=True)
    cid = ctr_store.add(redis(), current_user(), ctype, location,
                        name=field(body, "name", str, default="") or "",
                        description=field(body, "description", str, default="") or "",
                        public=bool(field(body, "public", bool, default=False)))
    return jsonify({"container_id": cid})


def _view(rec: dict) -> dict:
    out = {k: v for k, v in rec.items() if k != "owner"}
    out["public"] = rec.get("public") == "1"
    return out


def container_for_user(cid: str, user: str) -> dict:
    """The record of container ``cid`` if ``user`` owns it or it is public;
    404 otherwise, the same answer as for an id that does not exist."""
    cid = valid_uuid(cid, "container id")
    rec = ctr_store.get(redis(), cid)
    if not rec or not (rec.get("owner") == user or rec.get("public") == "1"):
        raise not_found("container", cid)
    return rec


@bp.get("/v2/containers")
def list_containers():
    return jsonify({"containers": [_view(r) for r in ctr_store.owned_by(redis(), current_user())]})


@bp.get("/v2/containers/<cid>/<ctype>")
def get_container(cid: str, ctype: str):
    rec = container_for_user(cid, current_user())
    if rec.get("type") != ctype.lower():
        raise not_found("container", rec["container_id"])
    return jsonify({"container": _view(rec)})
