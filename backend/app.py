"""The Flask application factory."""
from __future__ import annotations

import logging

from flask import Flask

from backend import api_errors, auth
from backend.redis_conn import connect
from backend.redis_conn import redis_url as default_redis_url
from backend.store.tasks import TaskStore
from funcx.defaults import setting


def create_app(redis_url: str | None = None) -> Flask:
    app = Flask(__name__)
    from backend.limits import request_body_limit

    app.config["MAX_CONTENT_LENGTH"] = request_body_limit()  # the payload limit, encoded
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider
    url = redis_url or default_redis_url()
    r = connect(url, socket_timeout=float(setting("REDIS_SOCKET_TIMEOUT_S")),
                socket_connect_timeout=float(setting("REDIS_SOCKET_TIMEOUT_S")))
    app.extensions["funcx_redis"] = r
    app.extensions["funcx_redis_url"] = url
    app.extensions["funcx_tasks"] = TaskStore(r)
    from backend.identity import make_provider

    app.extensions["funcx_identity"] = make_provider(r)
    api_errors.register(app)
    auth.register(app)
    from backend.routes import (
        blobs,
        containers,
        endpoints,
        functions,
        groups,
        identity,
        openapi,
        submit,
        taskgroups,
        tasks,
        version,
    )

    for mod in (version, functions, endpoints, submit, tasks, taskgroups, containers, identity,
                groups, openapi, blobs):
        app.register_blueprint(mod.bp)
    from backend import limits

    limits.register(app, url)  # after auth: limits are per identity
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return app

