"""Server-side rate limits per identity (Flask-Limiter, counters in Redis).

Reads and writes have separate budgets (``FUNCX_RATE_LIMIT_READ`` /
``FUNCX_RATE_LIMIT_WRITE``).  The check runs before the view, so a submit
that is refused with 429 has queued nothing; every 429 carries Retry-After.
"""
from __future__ import annotations

from flask import Flask, g, request

from funcx.defaults import setting

READ_METHODS = ["GET", "HEAD"]
WRITE_METHODS = ["POST", "PUT", "DELETE", "PATCH"]


def identity_key() -> str:
    ident = g.get("identity")
    return f"user:{ident.user_id}" if ident is not None else f"ip:{request.remote_addr}"


def register(app: Flask, redis_url: str) -> None:
    if not setting("RATE_LIMIT_ENABLED"):
        return
    from flask_limiter import Limiter

    # swallow_errors: with Redis down, the request goes on to fail cleanly with
    # 503 in the store rather than with a 500 from the limiter
    # no X-RateLimit-* headers on every answer (one more Redis call each); a
    # 429 carries Retry-After (backend/api_errors.py)
    limiter = Limiter(identity_key, app=app, storage_uri=redis_url, headers_enabled=False,
                      key_prefix="fx:ratelimit", strategy="sliding-window-counter", swallow_errors=True,
                      storage_options={"socket_timeout": 5, "socket_connect_timeout": 2})
    read, write = str(setting("RATE_LIMIT_READ")), str(setting("RATE_LIMIT_WRITE"))
    for bp in app.blueprints.values():
        if bp.name == "version":
            continue
        # shared: one read and one write budget per identity across every route
        # (a plain ``limit`` keys its scope by route, so each route had its own)
        limiter.shared_limit(read, "read", methods=READ_METHODS, per_method=False)(bp)
        limiter.shared_limit(write, "write", methods=WRITE_METHODS, per_method=False)(bp)
    app.extensions["funcx_limiter"] = limiter
