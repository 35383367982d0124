"""Submit-time checks for multi-user endpoints (issue 19).

A multi-user endpoint publishes, in its registration metadata, the JSON
schema of its user config template and — when its identity mapping is made
of expression rules only — those rules.  A submit to it is refused when the
rules map the caller's identity to no account (403 IDENTITY_UNMAPPED, logged)
or when ``user_endpoint_config`` is outside the schema (400
USER_ENDPOINT_CONFIG_INVALID naming the schema error).  The caller's identity
(``{"id", "username"}``) comes from the token, never from the request body,
and is written on the task for the endpoint to map again.

The rules and the schema are the endpoint owner's text run by the service
(regular expressions, templates), so the service runs them only for an
endpoint whose owner is a multi-user administrator (``funcx admin user
multi-user-admin NAME``): anyone else's multi-user endpoint gets every submit
through to the endpoint, which maps and checks for itself.  Whoever registers
them, they are checked at registration (:func:`check_registration`: 400
MULTI_USER_METADATA_INVALID naming the problem) and bounded
(``funcx.protocol.identity_mapping`` caps).
"""
from __future__ import annotations

import json
import logging

from backend.api_errors import ApiError
from funcx.protocol import error_codes
from funcx.protocol import identity_mapping as im
from funcx.protocol.user_config import UserConfigError, check_schema, validate

log = logging.getLogger("funcx.multiuser")


def metadata_of(ep: dict) -> dict:
    """The endpoint record's metadata ({} when unreadable)."""
    try:
        meta = json.loads(ep.get("metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


#: the largest published user config schema (JSON characters)
MAX_SCHEMA_CHARS = 65536


def _invalid(message: str) -> ApiError:
    return ApiError(400, error_codes.MULTI_USER_METADATA_INVALID, message)


def check_registration(meta: dict) -> None:
    """Refuse (400 MULTI_USER_METADATA_INVALID, naming the problem) a multi-user
    endpoint's published rules or schema that are malformed or over the bounds."""
    if meta.get("multi_user") is not True:
        return
    rules = meta.get("identity_mapping")
    if rules is not None:
        try:
            im.parse(rules)
        except im.MappingConfigError as e:
            raise _invalid(f"metadata.identity_mapping: {e}") from None
        except Exception as e:  # noqa: BLE001 - e.g. RecursionError: never a 500
            raise _invalid(f"metadata.identity_mapping cannot be read ({type(e).__name__})") \
                from None
    schema = meta.get("user_config_schema")
    if schema is not None:
        try:
            size = len(json.dumps(schema))
        except (TypeError, ValueError, RecursionError):
            raise _invalid("metadata.user_config_schema cannot be read") from None
        if size > MAX_SCHEMA_CHARS:
            raise _invalid(f"metadata.user_config_schema is over {MAX_SCHEMA_CHARS} "
                           "characters")
        try:
            check_schema(schema)
        except UserConfigError as e:
            raise _invalid(f"metadata.user_config_schema: {e}") from None


def owner_is_admin(ep: dict) -> bool:
    """Whether the endpoint's owner is a multi-user administrator (the service's
    Redis of this request)."""
    from backend.routes.common import redis
    from backend.store import users

    owner = ep.get("owner")
    return bool(owner) and users.is_multi_user_admin(redis(), str(owner))


def check_submit(ep: dict, eid: str, identity: dict[str, str],
                 user_config: dict | None, trusted: bool | None = None) -> tuple[dict, dict]:
    """(identity, user config) to write on the tasks: ({}, {}) for an endpoint
    that is not multi-user (its user_endpoint_config is ignored, as before).
    ``trusted``: whether to run the endpoint's rules and schema here (None: when
    its owner is a multi-user administrator, :func:`owner_is_admin`)."""
    meta = metadata_of(ep)
    if meta.get("multi_user") is not True:
        return {}, {}
    if trusted is None:
        trusted = owner_is_admin(ep)
    values = user_config or {}
    if not trusted:  # the endpoint maps and checks; here only the shape and size
        try:
            validate(values, {})
        except UserConfigError as e:
            raise ApiError(400, error_codes.USER_ENDPOINT_CONFIG_INVALID, str(e)) from None
        return dict(identity), dict(values)
    rules = meta.get("identity_mapping")
    if rules is not None:
        try:
            mapping = im.parse(rules)
        except Exception as e:  # noqa: BLE001 - the endpoint published something bad
            log.warning("endpoint %s published unusable identity mapping rules: %s", eid, e)
            mapping = None
        try:
            account = im.map_by_rules(mapping, identity) if mapping is not None else ""
        except Exception as e:  # noqa: BLE001 - never a 500: the endpoint maps again
            log.warning("endpoint %s identity mapping rules failed: %s", eid, type(e).__name__)
            account = ""
        if account is None:
            log.warning("submit refused: identity %s (%s) has no mapping on multi-user "
                        "endpoint %s", identity.get("username"), identity.get("id"), eid)
            raise ApiError(403, error_codes.IDENTITY_UNMAPPED,
                           f"your identity {identity.get('username')!r} is not mapped to a "
                           f"local account on endpoint {eid}: ask its administrators to add "
                           "you to its identity mapping")
    schema = meta.get("user_config_schema")
    if isinstance(schema, dict):
        try:
            check_schema(schema)  # registered before it was checked there: checked now
            validate(values, schema)
        except UserConfigError as e:
            raise ApiError(400, error_codes.USER_ENDPOINT_CONFIG_INVALID, str(e)) from None
    return dict(identity), dict(values)
