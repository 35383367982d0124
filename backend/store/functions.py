"""Registered functions: code as an opaque string, never unpickled here."""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Set as AbstractSet

import redis

from funcx.protocol import keys


def register(r: redis.Redis, owner: str, *, function_name: str, function_code: str,
             description: str = "", public: bool = False, group: str = "",
             container_uuid: str = "", entry_point: str = "", searchable: bool = True,
             metadata: dict | None = None) -> str:
    fid = str(uuid.uuid4())
    rec = {
        "function_uuid": fid,
        "function_name": function_name,
        "function_code": function_code,
        "description": description or "",
        "owner": owner,
        "public": "1" if public else "0",
        "group": group or "",
        "container_uuid": container_uuid or "",
        "entry_point": entry_point or "",
        "searchable": "1" if searchable else "0",
        "created_at": repr(time.time()),
        "metadata": json.dumps(metadata or {}),
    }
    with r.pipeline() as p:
        p.hset(keys.function(fid), mapping=rec)
        p.sadd(keys.user_functions(owner), fid)
        if public:
            p.sadd(keys.PUBLIC_FUNCTIONS, fid)
        if group:
            p.sadd(keys.group_functions(group), fid)
        p.execute()
    return fid


def get(r: redis.Redis, fid: str) -> dict | None:
    rec = r.hgetall(keys.function(fid))
    return rec or None


def get_many(r: redis.Redis, fids: list[str], fields: tuple[str, ...]) -> dict[str, list]:
    with r.pipeline(transaction=False) as p:
        for fid in fids:
            p.hmget(keys.function(fid), *fields)
        rows = p.execute()
    return dict(zip(fids, rows))


def delete(r: redis.Redis, fid: str, owner: str) -> None:
    group = r.hget(keys.function(fid), "group")
    with r.pipeline() as p:
        if group:
            p.srem(keys.group_functions(group), fid)
        p.delete(keys.function(fid))
        p.srem(keys.user_functions(owner), fid)
        p.srem(keys.PUBLIC_FUNCTIONS, fid)
        p.execute()


def public_view(rec: dict) -> dict:
    """The JSON document of a function (API.md)."""
    return {
        "function_uuid": rec.get("function_uuid"),
        "function_name": rec.get("function_name"),
        "function_code": rec.get("function_code"),
        "description": rec.get("description", ""),
        "container_uuid": rec.get("container_uuid") or None,
        "public": rec.get("public") == "1",
        "searchable": rec.get("searchable", "1") != "0",
        "group": rec.get("group") or None,
        "metadata": json.loads(rec.get("metadata") or "{}"),
    }


def search(r: redis.Redis, user_id: str, query: str, offset: int = 0, limit: int = 10,
           groups: AbstractSet[str] = frozenset(), include_unsearchable: bool = False) -> dict:
    """Searchable functions the user may run (own, shared with their groups,
    public) whose name or description contains ``query`` (case-insensitive),
    newest first.  A function registered ``searchable=False`` is in no one's
    results, its owner's included (the funcX documents: it is not indexed),
    unless ``include_unsearchable`` asks for the caller's own as well (the
    SDK's and CLI's lookups of a function by name)."""
    ids = r.smembers(keys.user_functions(user_id)) | r.smembers(keys.PUBLIC_FUNCTIONS)
    for gid in groups:
        ids |= r.smembers(keys.group_functions(gid))
    ids = sorted(ids)
    fields = ("function_uuid", "function_name", "description", "owner", "public", "searchable",
              "created_at", "group", "container_uuid")
    q = query.lower()
    hits = []
    for _fid, row in get_many(r, ids, fields).items():
        rec = dict(zip(fields, row))
        if rec["function_uuid"] is None:
            continue
        if rec["searchable"] == "0" and not (include_unsearchable and rec["owner"] == user_id):
            continue
        text = f"{rec['function_name'] or ''} {rec['description'] or ''}".lower()
        if q in text:
            hits.append(rec)
    hits.sort(key=lambda x: float(x["created_at"] or 0), reverse=True)
    page = hits[offset:offset + limit]
    return {"total": len(hits), "offset": offset, "limit": limit, "results": [
        {"function_uuid": h["function_uuid"], "function_name": h["function_name"],
         "description": h["description"] or "", "owner": h["owner"], "public": h["public"] == "1",
         "mine": h["owner"] == user_id, "group": h["group"] or None,
         "created_at": h["created_at"]} for h in page]}


def may_run(rec: dict, user_id: str, groups: AbstractSet[str] = frozenset()) -> bool:
    """The owner, anyone if public, and members of the group it is shared with."""
    return (rec.get("owner") == user_id or rec.get("public") == "1"
            or bool(rec.get("group")) and rec.get("group") in groups)
