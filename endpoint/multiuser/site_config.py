"""The parent's ``multi_user.yaml``: which files hold the identity mapping,
the user config template and its schema, and the limits on children.  Its
presence in an endpoint directory is what makes the endpoint multi-user."""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from funcx.protocol import identity_mapping
from funcx.protocol.user_config import UserConfigError, check_schema

FILE = "multi_user.yaml"
MAPPING_FILE = "identity_mapping.json"
TEMPLATE_FILE = "user_config_template.yaml.j2"
SCHEMA_FILE = "user_config_schema.json"


#: the defaults of denied_accounts and denied_groups (review M2)
DENIED_ACCOUNTS = ("nobody", "root")
DENIED_GROUPS = ("adm", "disk", "docker", "lxd", "root", "shadow", "sudo", "wheel")


class SiteConfigError(ValueError):
    """multi_user.yaml or a file it names is unusable; the message names which."""


@dataclass
class SiteConfig:
    """The parent's settings (each documented in the generated multi_user.yaml)."""

    directory: Path
    mapping: identity_mapping.Mapping
    template: str
    schema: dict
    #: seconds a child may have no task before it is shut down
    idle_timeout_s: float = 300.0
    #: children (distinct rendered configs) one account may have at once
    max_children_per_user: int = 2
    #: children in all
    max_children: int = 64
    #: tasks one account may have in flight on this endpoint (more fail at once with
    #: USER_ENDPOINT_LIMIT): one user's backlog never fills the parent's window of
    #: FUNCX_AGENT_MAX_INFLIGHT tasks, so other users' tasks are still read
    max_tasks_per_user: int = 1000
    #: accounts no identity may map to (root always refused)
    denied_accounts: tuple[str, ...] = DENIED_ACCOUNTS
    #: the lowest uid a child may run as (system accounts below it are refused)
    min_uid: int = 1000
    #: the highest uid a child may run as (nobody, 65534, and other high service
    #: ids above it are refused)
    max_uid: int = 60000
    #: an account in any of these groups (primary or supplementary) is refused:
    #: membership in them is root-equivalent or reads secrets; "root" is gid 0
    denied_groups: tuple[str, ...] = DENIED_GROUPS
    #: seconds an external mapping program may run
    mapping_timeout_s: float = 10.0
    #: the Python the children run: one every mapped account can execute, with
    #: funcX importable (default: the parent's own interpreter)
    child_python: str = sys.executable

    def published(self) -> dict[str, Any]:
        """What the parent tells the service at registration (endpoint metadata):
        the schema, and the expression rules when they alone decide."""
        out: dict[str, Any] = {"multi_user": True, "user_config_schema": self.schema}
        if self.mapping.service_decidable:
            out["identity_mapping"] = self.mapping.expression_documents()
        return out


def is_multi_user(endpoint_dir: Path) -> bool:
    return (endpoint_dir / FILE).is_file()


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text()
    except OSError as e:
        raise SiteConfigError(f"{path}: cannot read the {what} ({e.strerror})") from None


def load(endpoint_dir: Path) -> SiteConfig:
    """Read multi_user.yaml and the files it names (SiteConfigError naming the fault)."""
    path = endpoint_dir / FILE
    try:
        raw = yaml.safe_load(_read(path, "multi-user settings")) or {}
    except yaml.YAMLError as e:
        raise SiteConfigError(f"{path}: not YAML ({e})") from None
    if not isinstance(raw, dict):
        raise SiteConfigError(f"{path}: must be a mapping of settings")
    known = {"identity_mapping_config_path", "user_config_template_path",
             "user_config_schema_path", "idle_timeout_s", "max_children_per_user",
             "max_children", "max_tasks_per_user", "denied_accounts", "min_uid",
             "max_uid", "denied_groups",
             "mapping_timeout_s",
             "child_python"}
    unknown = set(raw) - known
    if unknown:
        raise SiteConfigError(f"{path}: unknown setting(s) {sorted(unknown)}")

    def named(key: str, default: str) -> Path:
        p = Path(str(raw.get(key) or default))
        return p if p.is_absolute() else endpoint_dir / p

    mpath = named("identity_mapping_config_path", MAPPING_FILE)
    try:
        mapping = identity_mapping.parse(json.loads(_read(mpath, "identity mapping")))
    except json.JSONDecodeError as e:
        raise SiteConfigError(f"{mpath}: not JSON ({e})") from None
    except identity_mapping.MappingConfigError as e:
        raise SiteConfigError(f"{mpath}: {e}") from None
    spath = named("user_config_schema_path", SCHEMA_FILE)
    try:
        schema = check_schema(json.loads(_read(spath, "user config schema")))
    except json.JSONDecodeError as e:
        raise SiteConfigError(f"{spath}: not JSON ({e})") from None
    except UserConfigError as e:
        raise SiteConfigError(f"{spath}: {e}") from None
    template = _read(named("user_config_template_path", TEMPLATE_FILE), "user config template")
    cfg = SiteConfig(endpoint_dir, mapping, template, schema)
    for key, kind in (("idle_timeout_s", float), ("max_children_per_user", int),
                      ("max_children", int), ("max_tasks_per_user", int), ("min_uid", int),
                      ("max_uid", int),
                      ("mapping_timeout_s", float)):
        if key in raw:
            value = raw[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise SiteConfigError(f"{path}: {key} must be a number >= 0, not {value!r}")
            setattr(cfg, key, kind(value))
    if raw.get("child_python") is not None:
        py = str(raw["child_python"])
        if not (os.path.isabs(py) and os.access(py, os.X_OK)):
            raise SiteConfigError(f"{path}: child_python must be the absolute path of a "
                                  f"Python interpreter, not {py!r}")
        cfg.child_python = py
    if "denied_accounts" in raw:
        denied = raw["denied_accounts"]
        if not (isinstance(denied, list) and all(isinstance(a, str) for a in denied)):
            raise SiteConfigError(f"{path}: denied_accounts must be a list of account names")
        cfg.denied_accounts = tuple(sorted(set(denied) | {"root"}))
    if "denied_groups" in raw:
        groups = raw["denied_groups"]
        if not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
            raise SiteConfigError(f"{path}: denied_groups must be a list of group names")
        cfg.denied_groups = tuple(sorted(set(groups)))
    if cfg.max_uid < cfg.min_uid:
        raise SiteConfigError(f"{path}: max_uid ({cfg.max_uid}) is below min_uid "
                              f"({cfg.min_uid}): no account could be mapped")
    # a template that does not even parse is an administrator's error: say so at start
    from endpoint.multiuser.render import TemplateError, compile_template

    try:
        compile_template(template)
    except TemplateError as e:
        raise SiteConfigError(f"{named('user_config_template_path', TEMPLATE_FILE)}: {e}") \
            from None
    return cfg
