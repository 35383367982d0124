"""Local groups: an owner, members, and the functions shared with them.

In Globus mode group membership comes from Globus Groups instead (see
backend/identity.py); group ids are then Globus group ids.
"""
from __future__ import annotations

import time
import uuid

import redis

from funcx.protocol import keys


def create(r: redis.Redis, owner: str, name: str, description: str = "") -> str:
    gid = str(uuid.uuid4())
    with r.pipeline() as p:
        p.hset(keys.group(gid), mapping={"group_id": gid, "name": name, "owner": owner,
                                         "description": description,
                                         "created_at": repr(time.time())})
        p.sadd(keys.group_members(gid), owner)
        p.sadd(keys.user_groups(owner), gid)
        p.execute()
    return gid


def get(r: redis.Redis, gid: str) -> dict | None:
    return r.hgetall(keys.group(gid)) or None


def members(r: redis.Redis, gid: str) -> set[str]:
    return r.smembers(keys.group_members(gid))


def add_member(r: redis.Redis, gid: str, uid: str) -> None:
    with r.pipeline() as p:
        p.sadd(keys.group_members(gid), uid)
        p.sadd(keys.user_groups(uid), gid)
        p.execute()


def remove_member(r: redis.Redis, gid: str, uid: str) -> None:
    with r.pipeline() as p:
        p.srem(keys.group_members(gid), uid)
        p.srem(keys.user_groups(uid), gid)
        p.execute()


def of_user(r: redis.Redis, uid: str) -> set[str]:
    return r.smembers(keys.user_groups(uid))


def list_for(r: redis.Redis, uid: str) -> list[dict]:
    gids = sorted(of_user(r, uid))
    with r.pipeline(transaction=False) as p:
        for gid in gids:
            p.hgetall(keys.group(gid))
            p.scard(keys.group_members(gid))
        rows = p.execute()
    out = []
    for rec, count in zip(rows[::2], rows[1::2]):
        if rec:
            out.append({**rec, "members": count})
    return out
