"""GET /v2/version: public, the one route that needs no token."""
from __future__ import annotations

from flask import Blueprint, jsonify, request

from funcx.defaults import setting
from funcx.version import API_VERSION, __version__

bp = Blueprint("version", __name__)


def _components() -> dict:
    """Each component's health, read from the supervisor's record on this host
    (cheap: a file and a few /proc reads); empty where there is none."""
    from backend.control import components
    from funcx.home import read_json, service_record_path

    rec = read_json(service_record_path())
    if not rec:
        return {}
    # public route: health only, no log paths
    return {c["name"]: {k: v for k, v in c.items() if k not in ("name", "log")}
            for c in components(rec)}


@bp.get("/v2/version")
def version():
    extra = {"components": _components()} if request.args.get("service") == "all" else {}
    return jsonify({
        **extra,
        "api": API_VERSION,
        "min_sdk_version": str(setting("MIN_SDK_VERSION")),
        "min_ep_version": str(setting("MIN_EP_VERSION")),
        "web-service": __version__,
        "service": "funcx-selfhosted",
        # the SDK splits larger batches into requests of at most this many tasks
        "max_tasks_per_submit": int(setting("MAX_TASKS_PER_SUBMIT")),
    })
