"""Submit-time checks for multi-user endpoints (issue 19).

A multi-user endpoint publishes, in its registration metadata, the JSON
schema of its user config template and — when its identity mapping is made
of expression rules only — those rules.  A submit to it is refused when the
rules map the caller's identity to no account (403 IDENTITY_UNMAPPED, logged)
or when ``user_endpoint_config`` is outside the schema (400
USER_ENDPOINT_CONFIG_INVALID naming the schema error).  The caller's identity
(``{"id", "username"}``) comes from the token, never from the request body,
and is written on the task for the endpoint to map again.
"""
from __future__ import annotations

import json
import logging

from backend.api_errors import ApiError
from funcx.protocol import error_codes
from funcx.protocol import identity_mapping as im
from funcx.protocol.user_config import UserConfigError, validate

log = logging.getLogger("funcx.multiuser")


def metadata_of(ep: dict) -> dict:
    """The endpoint record's metadata ({} when unreadable)."""
    try:
        meta = json.loads(ep.get("metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def check_submit(ep: dict, eid: str, identity: dict[str, str],
                 user_config: dict | None) -> tuple[dict, dict]:
    """(identity, user config) to write on the tasks: ({}, {}) for an endpoint
    that is not multi-user (its user_endpoint_config is ignored, as before)."""
    meta = metadata_of(ep)
    if meta.get("multi_user") is not True:
        return {}, {}
    rules = meta.get("identity_mapping")
    if rules is not None:
        try:
            mapping = im.parse(rules)
        except im.MappingConfigError as e:  # the endpoint published something bad
            log.warning("endpoint %s published unusable identity mapping rules: %s", eid, e)
            mapping = None
        if mapping is not None and im.map_by_rules(mapping, identity) is None:
            log.warning("submit refused: identity %s (%s) has no mapping on multi-user "
                        "endpoint %s", identity.get("username"), identity.get("id"), eid)
            raise ApiError(403, error_codes.IDENTITY_UNMAPPED,
                           f"your identity {identity.get('username')!r} is not mapped to a "
                           f"local account on endpoint {eid}: ask its administrators to add "
                           "you to its identity mapping")
    values = user_config or {}
    schema = meta.get("user_config_schema")
    if isinstance(schema, dict):
        try:
            validate(values, schema)
        except UserConfigError as e:
            raise ApiError(400, error_codes.USER_ENDPOINT_CONFIG_INVALID, str(e)) from None
    return dict(identity), dict(values)
