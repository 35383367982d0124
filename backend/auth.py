"""Bearer-token authentication of every route but the public ones."""
from __future__ import annotations

from flask import Flask, current_app, g, request

from backend.api_errors import unauthorized

PUBLIC_PATHS = {"/v2/version", "/v2/openapi.json", "/openapi.json", "/v2/auth/token"}


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def register(app: Flask) -> None:
    @app.before_request
    def _authenticate():
        if request.path in PUBLIC_PATHS or request.method == "OPTIONS":
            return None
        token = bearer_token()
        if token is None:
            raise unauthorized()
        ident = app.extensions["funcx_identity"].authenticate(token)
        if ident is None:
            raise unauthorized("the bearer token is unknown, expired or revoked")
        g.identity = ident
        return None


def current_user() -> str:
    return g.identity.user_id


def current_groups() -> set[str]:
    """The caller's groups, looked up once per request."""
    if "groups" not in g:
        g.groups = current_app.extensions["funcx_identity"].groups_of(g.identity, bearer_token())
    return g.groups
