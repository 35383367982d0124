"""The user config template: a Jinja template (rendered in a sandbox) that
turns what a submitter sent as ``user_endpoint_config`` — after the schema
accepted it — into the child endpoint's options.

Every value a template prints goes through ``finalize``: it is written as
JSON (a subset of YAML), so a string is always one quoted scalar and can
never add a key, a line or anything but data to the rendered YAML; the
rendered text is read with ``yaml.safe_load`` (no Python objects) and only
the options in :data:`OPTIONS` are taken, each type-checked.  A value can
therefore not inject code into the child's configuration.
"""
from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

import jinja2
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from funcx.protocol.user_config import UserConfigError, validate


class TemplateError(ValueError):
    """The template does not compile, renders to bad YAML, or sets a bad option."""


def _number(lo: float, hi: float):
    def check(v: Any) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float)) and lo <= v <= hi
    return check


#: the child options a rendered config may set, and what each must be
OPTIONS: dict[str, Any] = {
    "workers": lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024,
    "prefetch": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10000,
    "walltime": _number(0.001, 10 ** 7),
    "max_walltime": _number(0.001, 10 ** 7),
    "mem_per_worker": _number(0.001, 10 ** 6),
    "heartbeat_period": _number(0.1, 3600),
    "working_dir": lambda v: isinstance(v, str) and 0 < len(v) < 4096 and "\0" not in v,
    "debug": lambda v: isinstance(v, bool),
}


def _finalize(value: Any) -> str:
    if isinstance(value, jinja2.Undefined):
        return "null"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def _environment() -> jinja2.Environment:
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, finalize=_finalize,
                                         autoescape=False, keep_trailing_newline=True)


@functools.lru_cache(maxsize=8)
def compile_template(text: str) -> jinja2.Template:
    """The compiled template (cached: the parent renders one per new task group)."""
    try:
        return _environment().from_string(text)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"line {e.lineno}: {e.message}") from None


def render(template: str, schema: dict, values: dict) -> dict[str, Any]:
    """The child's options for ``values`` (the submitter's, checked against
    ``schema`` first: UserConfigError), or TemplateError."""
    values = validate(values, schema)
    try:
        text = compile_template(template).render(**values)
    except jinja2.UndefinedError as e:
        raise UserConfigError(f"user_endpoint_config: the template needs {e.message}") from None
    except jinja2.TemplateError as e:  # a sandbox refusal included
        raise TemplateError(f"rendering the user config template: {e}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise TemplateError(f"the rendered user config is not YAML ({e})") from None
    if not isinstance(data, dict):
        raise TemplateError("the rendered user config must be a mapping of options")
    options: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        check = OPTIONS.get(key)
        if check is None:
            raise TemplateError(f"the rendered user config sets {key!r}, not one of "
                                f"{', '.join(sorted(OPTIONS))}")
        if not check(value):
            raise TemplateError(f"the rendered user config's {key} is out of range: {value!r}")
        options[key] = value
    return options


def fingerprint(options: dict[str, Any]) -> str:
    """A short id of a rendered config: one child per (account, fingerprint)."""
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:12]
