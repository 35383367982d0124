"""Identity mapping documents: which local account a submitter's identity
runs as on a multi-user endpoint (pure logic, shared by the service, which
refuses an unmapped identity at submit, and the endpoint, which maps again).

The documents follow Globus Compute's identity mapping configuration (the
``globus-identity-mapping`` format): a list of documents tried in order, each
either

* ``{"DATA_TYPE": "expression_identity_mapping#1.0.0", "mappings": [{"source":
  "{username}", "match": "(.*)@example\\.org", "output": "{0}", "ignore_case":
  false, "literal": false}]}``: the ``source`` template filled from the
  identity must match ``match`` whole (a regular expression, or a plain string
  with ``literal``); ``output`` is filled from the match's groups (``{0}`` the
  first capture); or
* ``{"DATA_TYPE": "external_identity_mapping#1.0.0", "command": [...]}``: a
  program given ``{"DATA_TYPE": "identity_mapping_input#1.0.0", "identities":
  [identity]}`` on stdin that answers ``{"DATA_TYPE":
  "identity_mapping_output#1.0.0", "result": [{"id": identity_id, "output":
  account}]}`` (run by the endpoint only: endpoint.multiuser.mapper).

An identity here is ``{"id": <the service's user id>, "username": <the user
name>}`` (the Globus identity id and username when the service runs in
Globus mode), written on each task by the service, never by the client.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

EXPRESSION = "expression_identity_mapping#1.0.0"
EXTERNAL = "external_identity_mapping#1.0.0"
INPUT = "identity_mapping_input#1.0.0"
OUTPUT = "identity_mapping_output#1.0.0"
#: what a local account name may look like (useradd's rule, at most 32 characters)
ACCOUNT_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_FIELDS = ("id", "username", "email")
#: bounds on a mapping, so that rules published to the service stay cheap to run:
#: expression rules in all documents, a ``match`` pattern's length, a
#: ``source``/``output`` template's length, and the filled ``source`` text's
#: length (longer text matches nothing)
MAX_RULES = 200
MAX_PATTERN = 256
MAX_TEMPLATE = 256
MAX_TEXT = 512


class MappingConfigError(ValueError):
    """A mapping document that cannot be used; the message names the rule."""


@dataclass(frozen=True)
class Rule:
    """One expression rule."""

    source: str
    match: str
    output: str
    ignore_case: bool = False
    literal: bool = False

    def apply(self, identity: dict[str, str]) -> str | None:
        """The account this rule maps ``identity`` to, or None."""
        try:
            text = self.source.format_map(_Fields(identity))
        except (KeyError, IndexError, ValueError):
            return None
        if len(text) > MAX_TEXT:
            return None
        flags = re.IGNORECASE if self.ignore_case else 0
        pattern = re.escape(self.match) if self.literal else self.match
        m = re.fullmatch(pattern, text, flags)
        if m is None:
            return None
        try:
            out = self.output.format(*m.groups(), **_Fields(identity))
        except (IndexError, KeyError, ValueError):
            return None
        return out if ACCOUNT_RE.fullmatch(out) else None


class _Fields(dict):
    """An identity's fields for ``str.format``: a missing one raises KeyError."""


@dataclass(frozen=True)
class Mapping:
    """Parsed mapping documents, in order: expression rules and programs."""

    docs: tuple[tuple[str, tuple[Rule, ...] | tuple[str, ...]], ...]

    @property
    def service_decidable(self) -> bool:
        """True when the rules alone decide (no external program): the service
        can then refuse an unmapped identity at submit."""
        return all(kind == EXPRESSION for kind, _ in self.docs)

    def expression_documents(self) -> list[dict[str, Any]]:
        """The expression documents, as published to the service."""
        return [{"DATA_TYPE": EXPRESSION, "mappings": [r.__dict__ for r in rules]}
                for kind, rules in self.docs if kind == EXPRESSION]


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise MappingConfigError(f"{where}: a mapping must be an object")
    unknown = set(raw) - {"source", "match", "output", "ignore_case", "literal"}
    if unknown:
        raise MappingConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    for k in ("source", "match", "output"):
        if not isinstance(raw.get(k), str) or not raw[k]:
            raise MappingConfigError(f"{where}: {k!r} must be a non-empty string")
    for k in ("ignore_case", "literal"):
        if not isinstance(raw.get(k, False), bool):
            raise MappingConfigError(f"{where}: {k!r} must be true or false")
    for k, limit in (("source", MAX_TEMPLATE), ("match", MAX_PATTERN),
                     ("output", MAX_TEMPLATE)):
        if len(raw[k]) > limit:
            raise MappingConfigError(f"{where}: {k!r} is over {limit} characters")
    _check_template(raw["source"], f"{where}: source", allow_groups=False)
    _check_template(raw["output"], f"{where}: output", allow_groups=True)
    if not raw.get("literal"):
        try:
            re.compile(raw["match"])
        except re.error as e:
            raise MappingConfigError(f"{where}: match is not a regular expression ({e})") \
                from None
    return Rule(raw["source"], raw["match"], raw["output"], raw.get("ignore_case", False),
                raw.get("literal", False))


def _check_template(text: str, where: str, allow_groups: bool) -> None:
    """Fields of a source/output template: identity fields (and, in an output,
    group numbers) only, with no format spec or conversion (``{username:>9999999}``
    would allocate what it asks)."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as e:
        raise MappingConfigError(f"{where} is not a template ({e})") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if spec or conversion:
            raise MappingConfigError(f"{where} field {{{name}}} may not have a format spec "
                                     "or conversion")
        if name not in _FIELDS and not (allow_groups and name.isdigit() and len(name) <= 2):
            allowed = ", ".join("{" + f + "}" for f in _FIELDS)
            raise MappingConfigError(f"{where} field {{{name}}} is not one of {allowed}"
                                     + (" or a group number ({0})" if allow_groups else ""))


def parse(raw: Any) -> Mapping:
    """Parse one document or a list of them (MappingConfigError naming the fault)."""
    docs = raw if isinstance(raw, list) else [raw]
    out: list = []
    for i, doc in enumerate(docs):
        where = f"identity mapping document {i}"
        if not isinstance(doc, dict):
            raise MappingConfigError(f"{where}: must be an object")
        kind = doc.get("DATA_TYPE")
        if kind == EXPRESSION:
            rules = doc.get("mappings")
            if not isinstance(rules, list) or not rules:
                raise MappingConfigError(f"{where}: 'mappings' must be a non-empty list")
            out.append((kind, tuple(_rule(r, f"{where} mapping {j}")
                                    for j, r in enumerate(rules))))
        elif kind == EXTERNAL:
            cmd = doc.get("command")
            if not (isinstance(cmd, list) and cmd and all(isinstance(c, str) for c in cmd)):
                raise MappingConfigError(f"{where}: 'command' must be a non-empty list of "
                                         "strings (the program and its arguments)")
            out.append((kind, tuple(cmd)))
        else:
            raise MappingConfigError(f"{where}: DATA_TYPE must be {EXPRESSION!r} or "
                                     f"{EXTERNAL!r}, not {kind!r}")
    if not out:
        raise MappingConfigError("identity mapping: no documents")
    n_rules = sum(len(items) for kind, items in out if kind == EXPRESSION)
    if n_rules > MAX_RULES:
        raise MappingConfigError(f"identity mapping: {n_rules} expression rules, over "
                                 f"{MAX_RULES}")
    return Mapping(tuple(out))


def map_by_rules(mapping: Mapping, identity: dict[str, str]) -> str | None:
    """The first account an expression rule gives (programs skipped), or None."""
    for kind, rules in mapping.docs:
        if kind != EXPRESSION:
            continue
        for rule in rules:
            account = rule.apply(identity)  # type: ignore[union-attr]
            if account is not None:
                return account
    return None


def program_input(identity: dict[str, str]) -> dict[str, Any]:
    """What an external mapping program reads on stdin."""
    return {"DATA_TYPE": INPUT, "identities": [dict(identity)]}


def program_output(raw: Any, identity: dict[str, str]) -> str | None:
    """The account an external program's answer gives ``identity``, or None
    (an answer that is malformed, names another id or a bad account: None)."""
    if not isinstance(raw, dict) or raw.get("DATA_TYPE") != OUTPUT:
        return None
    result = raw.get("result")
    if not isinstance(result, list):
        return None
    for item in result:
        if isinstance(item, dict) and item.get("id") == identity.get("id") \
                and isinstance(item.get("output"), str) and ACCOUNT_RE.fullmatch(item["output"]):
            return item["output"]
    return None
