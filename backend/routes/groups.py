"""Local groups (``FUNCX_AUTH=local``): create, list, and manage members.
Functions registered with ``group=<id>`` may be run by its members."""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend.api_errors import ApiError, bad_request, forbidden, not_found
from backend.auth import current_groups, current_user
from backend.routes.common import field, json_body, redis, valid_name, valid_uuid
from backend.store import groups as group_store
from backend.store import users
from funcx.defaults import setting
from funcx.protocol import error_codes

bp = Blueprint("groups", __name__)


def _local_only() -> None:
    if str(setting("AUTH")).lower() != "local":
        raise ApiError(400, error_codes.GROUPS_ARE_GLOBUS, "groups are managed in Globus Groups in this mode")


def _visible(gid: str) -> dict:
    gid = valid_uuid(gid, "group id")
    rec = group_store.get(redis(), gid)
    if rec is None or gid not in current_groups():
        raise not_found("group", gid)
    return rec


def _user_id(name_or_id: str) -> str | None:
    """The id of the user named (or with id) ``name_or_id``, or None.  Callers
    answer the same whether or not the user exists: no route tells a caller
    which user names exist."""
    return users.find(redis(), name_or_id)


@bp.post("/v2/groups")
def create_group():
    _local_only()
    body = json_body()
    name = valid_name(field(body, "name", str, required=True), "name").strip()
    gid = group_store.create(redis(), current_user(), name,
                             field(body, "description", str, default="") or "")
    return jsonify({"group_id": gid, "name": name})


@bp.get("/v2/groups")
def list_groups():
    rows = group_store.list_for(redis(), current_user()) if str(setting("AUTH")).lower() == "local" \
        else [{"group_id": g} for g in sorted(current_groups())]
    return jsonify({"groups": rows})


@bp.get("/v2/groups/<gid>")
def get_group(gid: str):
    _local_only()
    rec = _visible(gid)
    return jsonify({**rec, "members": sorted(group_store.members(redis(), rec["group_id"]))})


@bp.post("/v2/groups/<gid>/members")
def add_member(gid: str):
    _local_only()
    rec = _visible(gid)
    if rec["owner"] != current_user():
        raise forbidden("only the group's owner may add members")
    user = field(json_body(), "user", str, required=True)
    uid = _user_id(user)
    if uid is not None:  # an unknown name is answered alike: nothing to add
        group_store.add_member(redis(), rec["group_id"], uid)
    return jsonify({"group_id": rec["group_id"], "added": user})


@bp.delete("/v2/groups/<gid>/members/<user>")
def remove_member(gid: str, user: str):
    _local_only()
    rec = _visible(gid)
    uid = _user_id(user)
    if current_user() not in (rec["owner"], uid):  # unknown or someone else: alike
        raise forbidden("only the group's owner may remove other members")
    if uid == rec["owner"]:
        raise bad_request("the owner cannot leave their own group")
    if uid is not None:
        group_store.remove_member(redis(), rec["group_id"], uid)
    return jsonify({"group_id": rec["group_id"], "removed": user})
