"""GET /v2/version: public, the one route that needs no token."""
from __future__ import annotations

from flask import Blueprint, jsonify

from funcx.defaults import setting
from funcx.version import API_VERSION, __version__

bp = Blueprint("version", __name__)


@bp.get("/v2/version")
def version():
    return jsonify({
        "api": API_VERSION,
        "min_sdk_version": str(setting("MIN_SDK_VERSION")),
        "min_ep_version": str(setting("MIN_EP_VERSION")),
        "web-service": __version__,
        "service": "funcx-selfhosted",
        # the SDK splits larger batches into requests of at most this many tasks
        "max_tasks_per_submit": int(setting("MAX_TASKS_PER_SUBMIT")),
    })
