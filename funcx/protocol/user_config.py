"""``user_endpoint_config``: what a submitter may set in a multi-user
endpoint's per-user configuration, checked against the JSON schema that the
endpoint publishes (its ``user_config_schema.json``), at submit by the service
and again by the endpoint before it renders the template.
"""
from __future__ import annotations

import json
from typing import Any

import jsonschema
from referencing import Registry

#: a user_endpoint_config larger than this (JSON bytes) is refused as is
MAX_BYTES = 16384


class UserConfigError(ValueError):
    """A user_endpoint_config the schema refuses; the message names where and why."""


def check_schema(schema: Any) -> dict:
    """``schema`` if it is a valid JSON schema (draft 2020-12), else UserConfigError."""
    if not isinstance(schema, dict):
        raise UserConfigError("the user config schema must be a JSON object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise UserConfigError(f"the user config schema is not valid: {e.message}") from None
    except Exception as e:  # noqa: BLE001 - e.g. RecursionError on a very deep schema
        raise UserConfigError(f"the user config schema is not valid ({type(e).__name__})") \
            from None
    return schema


def validate(values: Any, schema: dict) -> dict:
    """``values`` if the schema accepts them, else UserConfigError naming the
    first error's path and message (the refusal the submitter sees)."""
    if not isinstance(values, dict):
        raise UserConfigError("user_endpoint_config must be a JSON object")
    if len(json.dumps(values)) > MAX_BYTES:
        raise UserConfigError(f"user_endpoint_config is over {MAX_BYTES} bytes")
    try:
        # an empty registry: a $ref to anything outside the schema is unresolvable,
        # never fetched (jsonschema's default would still GET a remote $ref)
        validator = jsonschema.Draft202012Validator(schema, registry=Registry())
        errors = sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    except Exception as exc:  # noqa: BLE001 - a schema never checked (check_schema) can fail
        raise UserConfigError("the endpoint's user config schema cannot be applied "
                              f"({type(exc).__name__}); ask its administrators") from None
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise UserConfigError(f"user_endpoint_config at {where}: {e.message}")
    return values
