"""Who am I, log out (revoke this token), and the client-credentials grant."""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from backend.api_errors import unauthorized
from backend.auth import bearer_token
from backend.routes.common import field, json_body, redis
from backend.store import users
from funcx.defaults import setting

bp = Blueprint("identity", __name__)


@bp.get("/v2/whoami")
def whoami():
    return jsonify({"user_id": g.identity.user_id, "username": g.identity.name})


@bp.post("/v2/logout")
def logout():
    """Revoke the token this request carries; it stops working at once."""
    revoked = users.revoke_token(redis(), bearer_token() or "")
    return jsonify({"revoked": revoked})


@bp.post("/v2/auth/token")
def client_credentials():
    """Exchange a client id and secret for a bearer token (public route)."""
    body = json_body()
    token = users.exchange_client_secret(redis(), field(body, "client_id", str, required=True),
                                         field(body, "client_secret", str, required=True))
    if token is None:
        raise unauthorized("unknown client id or wrong secret")
    return jsonify({"access_token": token, "token_type": "Bearer",
                    "expires_in": int(setting("TOKEN_TTL_S"))})
