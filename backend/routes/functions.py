"""Register, get and delete functions (v3 and the 1.0 v2 shape)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend.api_errors import bad_request, not_found
from backend.auth import current_groups, current_user
from backend.limits import check_payload
from backend.routes.common import field, function_for_user, json_body, redis, valid_name, valid_uuid
from backend.routes.containers import container_for_user
from backend.store import functions as fn_store
from funcx.serialize import pack_buffers

bp = Blueprint("functions", __name__)


def _register(body: dict):
    code = field(body, "function_code", str, required=True)
    if not code.strip():
        raise bad_request("function_code is empty")
    check_payload(code, "the function's code")
    container = field(body, "container_uuid", str, default="")
    if container:  # the caller's own or a public one; else 404, as if it did not exist
        container = container_for_user(container, current_user())["container_id"]
    group = field(body, "group", str, default="")
    if group:
        group = valid_uuid(group, "group id")
        if group not in current_groups():
            raise not_found("group", group)
    meta = field(body, "meta", dict, default=None) or field(body, "metadata", dict, default=None)
    name = field(body, "function_name", str, default="") or "function"
    valid_name(name, "function_name")
    if field(body, "serialized", bool, default=True) is False:
        # 4.19 register_source_code: raw source defining ``name``; store it as
        # the ``st`` strategy (exec the source, take ``name``), one packed buffer
        if not name.isidentifier():
            raise bad_request("function_name must name a function defined in the source")
        code = pack_buffers([f"st\n{name}:{code}"])
    answer = fn_store.register_version(
        redis(), current_user(),
        function_name=name,
        function_code=code,
        description=field(body, "description", str, default="") or "",
        public=field(body, "public", bool, default=False),
        group=group,
        container_uuid=container,
        entry_point=field(body, "entry_point", str, default="") or "",
        searchable=field(body, "searchable", bool, default=True),
        metadata=meta,
    )
    # the same content again: the same id (no duplicate); new content under a
    # name of yours: that name's next version.  The answer is API.md's
    # {"function_uuid"}; ?detail=1 (our SDK) adds function_name, version, reused
    from flask import request

    if request.args.get("detail", "") in ("1", "true"):
        return jsonify(answer)
    return jsonify({"function_uuid": answer["function_uuid"]})


@bp.post("/v3/functions")
def register_v3():
    return _register(json_body())


@bp.post("/v2/functions")
def register_v2():
    return _register(json_body())


@bp.get("/v2/functions")
def search_functions():
    """Functions the caller may run whose name or description matches ``q``;
    with ``name``, the caller's own versions of that exact name, latest first
    (``version``: only that one)."""
    from flask import request

    try:
        offset = max(0, int(request.args.get("offset", 0)))
        limit = min(100, max(1, int(request.args.get("limit", 10))))
        version = request.args.get("version")
        version_n = int(version) if version not in (None, "") else None
    except ValueError:
        raise bad_request("offset, limit and version must be integers") from None
    name = request.args.get("name")
    own_hidden = request.args.get("include_unsearchable", "") in ("1", "true")
    mine = request.args.get("mine", "") in ("1", "true")
    return jsonify(fn_store.search(redis(), current_user(), request.args.get("q", ""),
                                   offset, limit, current_groups(),
                                   include_unsearchable=own_hidden, name=name or None,
                                   version=version_n, mine_only=mine))


@bp.get("/v2/functions/<fid>")
@bp.get("/v3/functions/<fid>")
def get_function(fid: str):
    return jsonify(fn_store.public_view(function_for_user(fid, current_user())))


@bp.delete("/v2/functions/<fid>")
@bp.delete("/v3/functions/<fid>")
def delete_function(fid: str):
    rec = function_for_user(fid, current_user(), write=True)
    fn_store.delete(redis(), rec["function_uuid"], current_user())
    return jsonify({"result": 302, "function_uuid": rec["function_uuid"]})
