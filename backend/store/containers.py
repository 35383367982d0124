"""Container records: ``fx:container:{id}`` (a hash) and each owner's index."""
from __future__ import annotations

import json
import time
import uuid

import redis

from funcx.protocol import keys


def add(r: redis.Redis, owner: str, ctype: str, location: str, name: str = "",
        description: str = "", public: bool = False) -> str:
    """Store a new container record; return its id."""
    cid = str(uuid.uuid4())
    rec = {"container_id": cid, "name": name, "description": description, "type": ctype,
           "location": location, "owner": owner, "created_at": repr(time.time()),
           "public": "1" if public else "0"}
    with r.pipeline() as p:
        p.hset(keys.container(cid), mapping=rec)
        p.sadd(keys.user_containers(owner), cid)
        p.execute()
    return cid


def get(r: redis.Redis, cid: str) -> dict | None:
    return r.hgetall(keys.container(cid)) or None


def owned_by(r: redis.Redis, owner: str) -> list[dict]:
    ids = sorted(r.smembers(keys.user_containers(owner)))
    with r.pipeline(transaction=False) as p:
        for cid in ids:
            p.hgetall(keys.container(cid))
        return [rec for rec in p.execute() if rec]


def image_specs(r: redis.Redis, cids: set[str]) -> dict[str, str]:
    """``{id: JSON {"type", "location"}}`` of the given containers, as an
    endpoint receives them at submit (in one round trip)."""
    ids = sorted(cids)
    with r.pipeline(transaction=False) as p:
        for cid in ids:
            p.hmget(keys.container(cid), "type", "location")
        rows = p.execute()
    return {cid: json.dumps({"type": t, "location": loc})
            for cid, (t, loc) in zip(ids, rows) if t is not None}
