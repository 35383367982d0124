"""Registered functions: code as an opaque string, never unpickled here."""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Set as AbstractSet

import redis

from funcx.protocol import keys


def content_digest(fields: dict) -> str:
    """SHA-256 of everything a registration says (name, code, sharing, container,
    description, metadata): the same content from the same owner is one function."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def register(r: redis.Redis, owner: str, **fields) -> str:
    """Register a function (see :func:`register_version`); its id."""
    return register_version(r, owner, **fields)["function_uuid"]


def register_version(r: redis.Redis, owner: str, *, function_name: str, function_code: str,
                     description: str = "", public: bool = False, group: str = "",
                     container_uuid: str = "", entry_point: str = "", searchable: bool = True,
                     metadata: dict | None = None) -> dict:
    """Register a function; ``{"function_uuid", "function_name", "version", "reused"}``.

    The same content registered again by its owner answers with the existing
    id (``reused``: no duplicate row), so a script or an executor may register
    on every run — while it is its name's latest version.  New content under a
    name the owner already uses is that name's next version (numbers are never
    reused, even after a delete), and so is going back to an older version's
    content (A, B, then A again: a new version, so the name means A again); a
    name resolves to its latest version and older ones stay runnable by id.
    """
    content = {"function_name": function_name, "function_code": function_code,
               "description": description or "", "public": bool(public), "group": group or "",
               "container_uuid": container_uuid or "", "entry_point": entry_point or "",
               "searchable": bool(searchable), "metadata": metadata or {}}
    digest = content_digest(content)
    digests, versions = keys.user_function_digests(owner), keys.user_function_versions(owner)
    with r.pipeline() as p:
        while True:
            try:
                p.watch(digests, versions)
                known = p.hget(digests, digest)
                version = p.hget(keys.function(known), "version") if known else None
                newest = p.hget(versions, function_name)
                if known and p.exists(keys.function(known)) and (
                        version is None or newest is None or int(version) == int(newest)):
                    p.unwatch()
                    return {"function_uuid": known, "function_name": function_name,
                            "version": int(version) if version else None, "reused": True}
                version = int(p.hget(versions, function_name) or 0) + 1
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
                    "version": str(version),
                    "code_digest": digest,
                }
                p.multi()
                p.hset(keys.function(fid), mapping=rec)
                p.sadd(keys.user_functions(owner), fid)
                p.hset(versions, function_name, version)
                p.hset(digests, digest, fid)
                if public:
                    p.sadd(keys.PUBLIC_FUNCTIONS, fid)
                if group:
                    p.sadd(keys.group_functions(group), fid)
                p.execute()
                return {"function_uuid": fid, "function_name": function_name,
                        "version": version, "reused": False}
            except redis.WatchError:
                continue  # another registration of this owner's went first: look again


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
    """Delete one function (one version of its name: the name then resolves to
    the latest one left; its number is not issued again)."""
    group, digest = r.hmget(keys.function(fid), "group", "code_digest")
    with r.pipeline() as p:
        if group:
            p.srem(keys.group_functions(group), fid)
        if digest and r.hget(keys.user_function_digests(owner), digest) == fid:
            p.hdel(keys.user_function_digests(owner), digest)
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
        "version": _version(rec.get("version")),
    }


def _version(raw: str | None) -> int | None:
    """A stored version number (None for a function registered before versions)."""
    return int(raw) if raw else None


def search(r: redis.Redis, user_id: str, query: str, offset: int = 0, limit: int = 10,
           groups: AbstractSet[str] = frozenset(), include_unsearchable: bool = False,
           name: str | None = None, version: int | None = None, mine_only: bool = False) -> dict:
    """Searchable functions the user may run (own, shared with their groups,
    public) whose name or description contains ``query`` (case-insensitive),
    newest first.  A function registered ``searchable=False`` is in no one's
    results, its owner's included (the funcX documents: it is not indexed),
    unless ``include_unsearchable`` asks for the caller's own as well (the
    SDK's and CLI's lookups of a function by name).

    ``name`` (exact) lists the caller's own versions of that name, latest
    first, hidden ones included; ``version`` narrows them to that number.
    Each hit says its ``version`` and, for the caller's own, whether it is
    the ``latest`` of its name.  ``mine_only``: the caller's own functions
    only (so a page and its ``total`` count only them)."""
    ids = r.smembers(keys.user_functions(user_id))
    if name is None and not mine_only:
        ids = ids | r.smembers(keys.PUBLIC_FUNCTIONS)
        for gid in groups:
            ids |= r.smembers(keys.group_functions(gid))
    fields = ("function_uuid", "function_name", "description", "owner", "public", "searchable",
              "created_at", "group", "container_uuid", "version")
    q = query.lower()
    hits: list[dict] = []
    latest: dict[str, tuple[float, float]] = {}
    for _fid, row in get_many(r, sorted(ids), fields).items():
        rec = dict(zip(fields, row))
        if rec["function_uuid"] is None:
            continue
        mine = rec["owner"] == user_id
        if mine:  # the latest of each of the caller's names, over all of them
            order = _order(rec)
            if order > latest.get(rec["function_name"], (-1.0, -1.0)):
                latest[rec["function_name"]] = order
        if name is not None:
            if not mine or rec["function_name"] != name or (
                    version is not None and _version(rec["version"]) != version):
                continue
        elif rec["searchable"] == "0" and not (include_unsearchable and mine):
            continue
        text = f"{rec['function_name'] or ''} {rec['description'] or ''}".lower()
        if q in text:
            hits.append(rec)
    hits.sort(key=_order if name is not None else lambda x: float(x["created_at"] or 0),
              reverse=True)
    page = hits[offset:offset + limit]
    return {"total": len(hits), "offset": offset, "limit": limit, "results": [
        {"function_uuid": h["function_uuid"], "function_name": h["function_name"],
         "description": h["description"] or "", "owner": h["owner"], "public": h["public"] == "1",
         "mine": h["owner"] == user_id, "group": h["group"] or None,
         "created_at": h["created_at"], "version": _version(h["version"]),
         "latest": h["owner"] == user_id and latest.get(h["function_name"]) == _order(h)}
        for h in page]}


def _order(rec: dict) -> tuple[float, float]:
    """Versions order by number, then (functions registered before versions) by age."""
    return (float(rec.get("version") or 0), float(rec.get("created_at") or 0))


def may_run(rec: dict, user_id: str, groups: AbstractSet[str] = frozenset()) -> bool:
    """The owner, anyone if public, and members of the group it is shared with."""
    return (rec.get("owner") == user_id or rec.get("public") == "1"
            or bool(rec.get("group")) and rec.get("group") in groups)
