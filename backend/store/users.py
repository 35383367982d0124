"""Users and bearer tokens.  Tokens are random, shown once, stored hashed."""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass

import redis

from funcx.defaults import setting
from funcx.protocol import keys


@dataclass(frozen=True)
class Identity:
    user_id: str
    name: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(r: redis.Redis, name: str) -> str:
    """Create user ``name`` (idempotent by name); return its id."""
    uid = r.hget(keys.USERS, name)
    if uid:
        return uid
    uid = str(uuid.uuid4())
    if not r.hsetnx(keys.USERS, name, uid):  # lost a race: use the winner's
        return r.hget(keys.USERS, name)
    r.hset(keys.user(uid), mapping={"name": name, "created_at": repr(time.time()), "disabled": "0"})
    return uid


def issue_token(r: redis.Redis, user_id: str, ttl_s: int | None = None) -> str:
    """A new bearer token for ``user_id``; only its hash is stored."""
    ttl = int(ttl_s or setting("TOKEN_TTL_S"))
    token = "fx_" + secrets.token_urlsafe(32)
    key = keys.token(hash_token(token))
    with r.pipeline() as p:
        p.hset(key, mapping={"user": user_id, "created_at": repr(time.time())})
        p.expire(key, ttl)
        p.execute()
    return token


def revoke_token(r: redis.Redis, token: str) -> bool:
    return bool(r.delete(keys.token(hash_token(token))))


# KEYS: the token's record.  ARGV: the user-key prefix.  One round trip per request.
_AUTHENTICATE = """
local uid = redis.call('HGET', KEYS[1], 'user')
if not uid then return false end
local rec = redis.call('HMGET', ARGV[1] .. uid, 'name', 'disabled')
return {uid, rec[1] or false, rec[2] or false}
"""
_scripts: dict[int, object] = {}


def authenticate(r: redis.Redis, token: str) -> Identity | None:
    """The identity a bearer token belongs to, or None (unknown, expired, disabled)."""
    script = _scripts.get(id(r))
    if script is None:
        script = _scripts[id(r)] = r.register_script(_AUTHENTICATE)
    found = script(keys=[keys.token(hash_token(token))], args=[keys.user("")])
    if not found:
        return None
    uid, name, disabled = found
    if not name or disabled == "1":
        return None
    return Identity(uid, name)


def create_client(r: redis.Redis, user_id: str, name: str = "") -> tuple[str, str]:
    """A client id/secret pair acting as ``user_id``; the secret is shown once."""
    client_id = str(uuid.uuid4())
    secret = secrets.token_urlsafe(32)
    r.hset(keys.client(client_id), mapping={"user": user_id, "name": name,
                                            "secret_hash": hash_token(secret),
                                            "created_at": repr(time.time())})
    return client_id, secret


def exchange_client_secret(r: redis.Redis, client_id: str, secret: str) -> str | None:
    """A new token for a valid client id/secret pair, else None."""
    rec = r.hgetall(keys.client(client_id))
    if not rec or not secrets.compare_digest(rec.get("secret_hash", ""), hash_token(secret)):
        return None
    disabled = r.hget(keys.user(rec["user"]), "disabled")
    if disabled in (None, "1"):
        return None
    return issue_token(r, rec["user"])
