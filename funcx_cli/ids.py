"""Short task ids (as ``git`` shows commits) and the prefixes accepted back
in their place: the decision is pure (:func:`match_prefix`); :func:`resolve_task_ids`
asks the service for your recent tasks only when a prefix is given."""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

#: characters of a task id shown in listings
SHORT = 8
#: the fewest characters accepted as a prefix
MIN_PREFIX = 4
#: how many of your recent tasks a prefix is looked up among
LOOKUP_LIMIT = 10_000


class IdError(ValueError):
    """A prefix that names no task or several (``code``: the CLI's exit code)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def short(task_id: str | None) -> str:
    """The first :data:`SHORT` characters of an id."""
    return (task_id or "")[:SHORT]


def full_id(text: str) -> str | None:
    """``text`` as a canonical UUID, or None if it is not a whole one."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def match_prefix(prefix: str, known: Iterable[str]) -> str:
    """The one id of ``known`` starting with ``prefix`` (case-insensitive),
    else :class:`IdError` (3: none, 2: too short or ambiguous)."""
    from funcx_cli.errors import NOT_FOUND, USAGE

    p = prefix.strip().lower()
    if len(p) < MIN_PREFIX or any(c not in "0123456789abcdef-" for c in p):
        raise IdError(f"{prefix!r} is not a task id or a prefix of one (at least "
                      f"{MIN_PREFIX} hex digits)", USAGE)
    hits = sorted({k for k in known if k.lower().startswith(p)})
    if not hits:
        raise IdError(f"no task of yours starts with {prefix!r} (among your recent tasks; "
                      "give the whole id)", NOT_FOUND)
    if len(hits) > 1:
        raise IdError(f"{prefix!r} is ambiguous: {len(hits)} tasks start with it ("
                      + ", ".join(hits[:3]) + ("…" if len(hits) > 3 else "")
                      + "); give more characters", USAGE)
    return hits[0]


def resolve_task_ids(fxc: Any, texts: list[str]) -> list[str]:
    """Whole task ids for ``texts`` (ids or unambiguous prefixes of your recent tasks)."""
    out: list[str | None] = [full_id(t) for t in texts]
    if all(out):
        return [t for t in out if t]
    known = [r["task_id"] for r in fxc.list_tasks(limit=LOOKUP_LIMIT)]
    return [o or match_prefix(t, known) for o, t in zip(out, texts)]
