"""Request parsing and lookups shared by the blueprints."""
from __future__ import annotations

import re
import uuid
from typing import Any

from flask import current_app, request

from backend.api_errors import bad_request, forbidden, not_found
from backend.auth import current_groups
from backend.store import endpoints as ep_store
from backend.store import functions as fn_store
from backend.store.tasks import TaskStore
from funcx.protocol import error_codes


def redis():
    return current_app.extensions["funcx_redis"]


def tasks() -> TaskStore:
    return current_app.extensions["funcx_tasks"]


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """Whether a string in ``value`` holds a lone surrogate (JSON ``"\\ud800"``),
    which no Redis write can encode."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return False


def json_body() -> dict:
    try:
        body = request.get_json(silent=True, force=True)
    except RecursionError:  # nested deeper than the JSON parser goes
        raise bad_request("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(request.get_data(cache=True)) and _has_lone_surrogate(body):
        raise bad_request("the request body has a string with a lone UTF-16 surrogate")
    return body


def field(body: dict, name: str, kind: type | tuple, required: bool = False, default: Any = None):
    """``body[name]`` checked against ``kind`` (a bool never passes for an int)."""
    if body.get(name) is None:
        if required:
            raise bad_request(f"missing field {name!r}")
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    value = body[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise bad_request(f"field {name!r} must be of type {names}")
    return value


NAME = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,256}")


def valid_name(value: str, what: str) -> str:
    """``value`` if it is a name by :data:`NAME` and not blank, else 400 naming ``what``."""
    if not NAME.fullmatch(value) or not value.strip():
        raise bad_request(f"field {what!r} must be 1 to 256 printable characters "
                          "(no control characters or line breaks) and not blank", error_codes.BAD_REQUEST)
    return value


def valid_uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise bad_request(f"{what} {str(value)[:64]!r} is not a valid UUID") from None


def check_endpoint(rec: dict | None, eid: str, user: str, write: bool = False) -> dict:
    """``rec`` if ``user`` may see the endpoint (404 otherwise: no existence
    leak); 403 if they may see but not change it."""
    if rec is None or not (rec.get("owner") == user or rec.get("public") == "1"):
        raise not_found("endpoint", eid)
    if write and rec.get("owner") != user:
        raise forbidden(f"only the owner may change endpoint {eid}")
    return rec


def check_function(rec: dict | None, fid: str, user: str, write: bool = False) -> dict:
    """``rec`` if ``user`` may run the function (404 otherwise); 403 on a change
    by someone other than the owner.  Groups are looked up only when needed."""
    if rec is None or not (rec.get("owner") == user or rec.get("public") == "1"
                           or fn_store.may_run(rec, user, current_groups())):
        raise not_found("function", fid)
    if write and rec.get("owner") != user:
        raise forbidden(f"only the owner may change function {fid}")
    return rec


def endpoint_for_user(eid: str, user: str, write: bool = False) -> dict:
    eid = valid_uuid(eid, "endpoint id")
    return check_endpoint(ep_store.get(redis(), eid), eid, user, write)


def function_for_user(fid: str, user: str, write: bool = False) -> dict:
    fid = valid_uuid(fid, "function id")
    return check_function(fn_store.get(redis(), fid), fid, user, write)
