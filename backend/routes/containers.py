"""Container records: a name, a type and an image location."""
from __future__ import annotations

import time
import uuid

from flask import Blueprint, jsonify

from backend.api_errors import bad_request, not_found
from backend.auth import current_user
from backend.routes.common import field, json_body, redis, valid_uuid
from funcx.protocol import keys

bp = Blueprint("containers", __name__)
TYPES = ("docker", "singularity", "apptainer", "podman", "shifter")


@bp.post("/v2/containers")
def register_container():
    body = json_body()
    ctype = field(body, "type", str, required=True).lower()
    if ctype not in TYPES:
        raise bad_request(f"container type must be one of {', '.join(TYPES)}")
    rec = {"name": field(body, "name", str, default="") or "",
           "description": field(body, "description", str, default="") or "",
           "type": ctype, "location": field(body, "location", str, required=True),
           "owner": current_user(), "created_at": repr(time.time())}
    cid = str(uuid.uuid4())  # validated: now store it
    with redis().pipeline() as p:
        p.hset(keys.container(cid), mapping={"container_id": cid, **rec})
        p.sadd(keys.user_containers(current_user()), cid)
        p.execute()
    return jsonify({"container_id": cid})


@bp.get("/v2/containers")
def list_containers():
    ids = sorted(redis().smembers(keys.user_containers(current_user())))
    with redis().pipeline(transaction=False) as p:
        for cid in ids:
            p.hgetall(keys.container(cid))
        recs = [r for r in p.execute() if r]
    for r in recs:
        r.pop("owner", None)
    return jsonify({"containers": recs})


@bp.get("/v2/containers/<cid>/<ctype>")
def get_container(cid: str, ctype: str):
    cid = valid_uuid(cid, "container id")
    rec = redis().hgetall(keys.container(cid))
    if not rec or rec.get("type") != ctype.lower():
        raise not_found("container", cid)
    rec.pop("owner", None)
    return jsonify({"container": rec})
