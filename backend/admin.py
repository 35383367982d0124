"""Administration on the service host: users, service-account clients and
tokens, straight in the service's Redis (whoever can read the service's
Redis secret under $FUNCX_HOME is the administrator)."""
from __future__ import annotations

import redis

from backend.store import users


class AdminError(RuntimeError):
    pass


def connect() -> redis.Redis:
    """The service's Redis: FUNCX_REDIS_URL, else the embedded one of this home."""
    from backend.embedded import local_url
    from backend.redis_conn import connect as connect_url
    from funcx.defaults import setting
    from funcx.home import read_json, service_dir, service_record_path

    url = str(setting("REDIS_URL")) or local_url(service_dir() / "redis",
                                                 read_json(service_record_path()))
    if not url:
        raise AdminError(f"no service Redis found ({service_dir() / 'redis' / 'secret'} is "
                         "missing); start the service once or set FUNCX_REDIS_URL")
    r = connect_url(url)
    try:
        r.ping()
    except redis.ConnectionError:
        raise AdminError("the service's Redis is not running; `funcx service start`") from None
    return r


def user_id(r: redis.Redis, name: str) -> str:
    uid = users.id_by_name(r, name)
    if not uid:
        raise AdminError(f"no user named {name!r}")
    return uid


def add_user(r: redis.Redis, name: str) -> dict:
    if users.id_by_name(r, name):
        raise AdminError(f"user {name!r} already exists")
    uid = users.create_user(r, name)
    return {"user": name, "user_id": uid, "token": users.issue_token(r, uid)}


def issue_token(r: redis.Redis, name: str, ttl_s: int | None = None) -> dict:
    uid = user_id(r, name)
    return {"user": name, "user_id": uid, "token": users.issue_token(r, uid, ttl_s)}


def list_users(r: redis.Redis) -> list[dict]:
    out = []
    for name, uid, rec in users.all_users(r):
        out.append({"user": name, "user_id": uid, "disabled": rec.get("disabled") == "1",
                    "kind": rec.get("kind", "user"),
                    "created_at": float(rec.get("created_at") or 0)})
    return out


def set_disabled(r: redis.Redis, name: str, disabled: bool = True) -> dict:
    """Disable (or enable) a user; their tokens stop working at once, and
    enabling them again does not revive tokens (or client secrets) issued
    before the disable: issue new ones."""
    uid = user_id(r, name)
    if disabled:
        users.disable(r, uid)
    else:
        users.enable(r, uid)
    return {"user": name, "user_id": uid, "disabled": disabled}


def set_multi_user_admin(r: redis.Redis, name: str, on: bool = True) -> dict:
    """Make a user a multi-user administrator (or no longer one): the service
    then runs the identity mapping rules and user config schema their multi-user
    endpoints publish, refusing unmapped identities and bad configs at submit."""
    uid = user_id(r, name)
    users.set_multi_user_admin(r, uid, on)
    return {"user": name, "user_id": uid, "multi_user_admin": on}


def add_client(r: redis.Redis, name: str, acting_as: str | None = None) -> dict:
    """A client id/secret pair: a new service-account user ``name``, or one
    acting as the existing user ``acting_as``."""
    if acting_as:
        uid = user_id(r, acting_as)
    else:
        if users.id_by_name(r, name):
            raise AdminError(f"user {name!r} already exists; use --user to act as it")
        uid = users.create_user(r, name)
        users.mark_client(r, uid)
    client_id, secret = users.create_client(r, uid, name)
    return {"name": name, "user_id": uid, "client_id": client_id, "client_secret": secret}
