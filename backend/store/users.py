"""Users and bearer tokens.  Tokens are random, shown once, stored hashed."""
from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from backend.store import scripts
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


def now(r: redis.Redis) -> str:
    """Redis's clock (epoch seconds): one clock for issuing credentials and for
    disabling users, whichever host does either."""
    sec, usec = r.time()
    return repr(sec + usec / 1e6)


def issue_token(r: redis.Redis, user_id: str, ttl_s: int | None = None) -> str:
    """A new bearer token for ``user_id``; only its hash is stored."""
    ttl = int(ttl_s or setting("TOKEN_TTL_S"))
    token = "fx_" + secrets.token_urlsafe(32)
    key = keys.token(hash_token(token))
    with r.pipeline() as p:
        p.hset(key, mapping={"user": user_id, "created_at": now(r)})
        p.expire(key, ttl)
        p.execute()
    return token


def revoke_token(r: redis.Redis, token: str) -> bool:
    return bool(r.delete(keys.token(hash_token(token))))


# registered scripts per client (scripts.AUTHENTICATE: one round trip per request)
_scripts: dict[int, Any] = {}


def issued_before_disable(issued_at: str | float | None, valid_after: str | float | None) -> bool:
    """Whether a credential issued at ``issued_at`` predates the user's last
    disable (``tokens_valid_after``): re-enabling a user does not revive it."""
    if valid_after in (None, "", False):
        return False
    try:
        return float(issued_at or 0) <= float(valid_after)
    except (TypeError, ValueError):
        return True  # unreadable: refuse rather than revive


def disable(r: redis.Redis, uid: str) -> None:
    """Disable a user: their tokens stop at once, and tokens and client
    secrets issued before now stay dead after the user is enabled again."""
    r.hset(keys.user(uid), mapping={"disabled": "1", "tokens_valid_after": now(r)})


def enable(r: redis.Redis, uid: str) -> None:
    """Enable a user again; only credentials issued after the disable work."""
    r.hset(keys.user(uid), "disabled", "0")


def authenticate(r: redis.Redis, token: str) -> Identity | None:
    """The identity a bearer token belongs to, or None (unknown, expired,
    disabled, or issued before the user was last disabled)."""
    script = _scripts.get(id(r))
    if script is None:
        script = _scripts[id(r)] = r.register_script(scripts.AUTHENTICATE)
    found = script(keys=[keys.token(hash_token(token))], args=[keys.user("")])
    if not found:
        return None
    uid, name, disabled, issued_at, valid_after = found
    if not name or disabled == "1" or issued_before_disable(issued_at, valid_after):
        return None
    return Identity(uid, name)


def create_client(r: redis.Redis, user_id: str, name: str = "") -> tuple[str, str]:
    """A client id/secret pair acting as ``user_id``; the secret is shown once."""
    client_id = str(uuid.uuid4())
    secret = secrets.token_urlsafe(32)
    r.hset(keys.client(client_id), mapping={"user": user_id, "name": name,
                                            "secret_hash": hash_token(secret),
                                            "created_at": now(r)})
    return client_id, secret


def exchange_client_secret(r: redis.Redis, client_id: str, secret: str) -> str | None:
    """A new token for a valid client id/secret pair, else None."""
    rec = r.hgetall(keys.client(client_id))
    if not rec or not secrets.compare_digest(rec.get("secret_hash", ""), hash_token(secret)):
        return None
    disabled, valid_after = r.hmget(keys.user(rec["user"]), "disabled", "tokens_valid_after")
    if disabled in (None, "1") or issued_before_disable(rec.get("created_at"), valid_after):
        return None  # a client made before the user's last disable stays dead
    return issue_token(r, rec["user"])


def find(r: redis.Redis, name_or_id: str) -> str | None:
    """The id of the user named ``name_or_id`` (or with that id), or None."""
    uid = r.hget(keys.USERS, name_or_id)
    if uid:
        return uid
    return name_or_id if r.exists(keys.user(name_or_id)) else None


def id_by_name(r: redis.Redis, name: str) -> str | None:
    return r.hget(keys.USERS, name) or None


def all_users(r: redis.Redis) -> list[tuple[str, str, dict]]:
    """``(name, id, record)`` of every user, by name."""
    names = sorted(r.hgetall(keys.USERS).items())
    with r.pipeline(transaction=False) as p:
        for _, uid in names:
            p.hgetall(keys.user(uid))
        recs = p.execute()
    return [(name, uid, rec) for (name, uid), rec in zip(names, recs)]


def mark_client(r: redis.Redis, uid: str) -> None:
    """Make user ``uid`` a service account (a client-credentials identity)."""
    r.hset(keys.user(uid), mapping={"kind": "client", "created_at": repr(time.time())})


def ensure_external(r: redis.Redis, uid: str, name: str) -> None:
    """A local record for an external (Globus) identity, so it can be disabled."""
    rec = keys.user(uid)
    with r.pipeline(transaction=False) as p:
        p.hsetnx(rec, "name", name)
        p.hsetnx(rec, "created_at", repr(time.time()))
        p.hsetnx(rec, "disabled", "0")
        p.execute()


def set_multi_user_admin(r: redis.Redis, uid: str, on: bool = True) -> None:
    """Make user ``uid`` a multi-user administrator (or no longer one): the
    service runs the identity mapping rules and user config schema that their
    multi-user endpoints publish (backend.multiuser)."""
    r.hset(keys.user(uid), "multi_user_admin", "1" if on else "0")


def is_multi_user_admin(r: redis.Redis, uid: str) -> bool:
    """Whether user ``uid`` is a multi-user administrator."""
    return r.hget(keys.user(uid), "multi_user_admin") == "1"


def access(r: redis.Redis, uid: str) -> tuple[str | None, str | None]:
    """``(disabled, tokens_valid_after)`` of user ``uid``."""
    disabled, valid_after = r.hmget(keys.user(uid), "disabled", "tokens_valid_after")
    return disabled, valid_after
