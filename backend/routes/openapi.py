"""GET /v2/openapi.json: the service's OpenAPI document (public)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from backend.openapi import SPEC

bp = Blueprint("openapi", __name__)


@bp.get("/v2/openapi.json")
def openapi_json():
    return jsonify(SPEC)
