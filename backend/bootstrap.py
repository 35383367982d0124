"""Local identity bootstrap: the first start creates a local user and writes
its token to ``$FUNCX_HOME/credentials/`` (0600), so the SDK, CLI and
endpoints on this machine are logged in with no further step."""
from __future__ import annotations

import getpass

import redis

from backend.store import users
from funcx.home import credentials_path, read_json, write_private_json


def ensure_local_credentials(r: redis.Redis, service_url: str) -> str:
    """Return the local user's id, (re)issuing the stored token if it is not valid."""
    path = credentials_path()
    rec = read_json(path) or {}
    token = rec.get("token")
    ident = users.authenticate(r, token) if token else None
    if ident is None:
        name = rec.get("user") or _local_name()
        uid = users.create_user(r, name)
        token = users.issue_token(r, uid)
        rec = {"user": name, "user_id": uid, "token": token}
    else:
        uid = ident.user_id
    rec["service_url"] = service_url
    write_private_json(path, rec)
    return uid


def _local_name() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "local"
