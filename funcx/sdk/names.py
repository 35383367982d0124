"""Names where ids are accepted: the pure decisions (which endpoint or function
version a name means, what a misspelt keyword was meant to be), apart from the
requests that fetch the candidates."""
from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Callable, Iterable

from funcx.errors import api_error
from funcx.protocol import error_codes

#: ``name@3``: version 3 of your function ``name``
VERSIONED = re.compile(r"(?P<name>.+)@(?P<version>\d+)")
#: candidates an error lists at most
SHOWN = 10


def as_uuid(value: str) -> str | None:
    """``value`` as a canonical UUID string, or None if it is not one (a name)."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def split_version(name: str) -> tuple[str, int | None]:
    """``"fit@2"`` -> ``("fit", 2)``; a name without ``@N`` -> ``(name, None)``."""
    m = VERSIONED.fullmatch(name)
    return (m["name"], int(m["version"])) if m else (name, None)


def _listing(names: Iterable[str], like: str) -> str:
    """Up to :data:`SHOWN` of ``names``, the ones most like ``like`` first."""
    uniq = sorted(set(n for n in names if n),
                  key=lambda n: (-difflib.SequenceMatcher(None, like, n).ratio(), n))
    if not uniq:
        return "none"
    more = f", ... ({len(uniq) - SHOWN} more)" if len(uniq) > SHOWN else ""
    return ", ".join(uniq[:SHOWN]) + more


def pick_endpoint(name: str, endpoints: list[dict],
                  me: str | Callable[[], str] | None = None) -> str:
    """The id of the endpoint ``name`` means among ``endpoints`` (GET /v2/endpoints
    rows): the one whose name or display name it is; of several, the caller's
    own (``me``: the caller's user id, or a call that fetches it, made only
    then) if exactly one is.  Else ENDPOINT_NOT_FOUND naming the endpoints there
    are, or AMBIGUOUS_NAME naming the candidates with their ids and owners."""
    hits = {e["uuid"]: e for e in endpoints if name in (e.get("name"), e.get("display_name"))}
    if len(hits) > 1 and me is not None:
        mine = me() if callable(me) else me
        own = [eid for eid, e in hits.items() if e.get("owner") == mine]
        if len(own) == 1:
            return own[0]
    if len(hits) == 1:
        return next(iter(hits))
    if not hits:
        near = difflib.get_close_matches(name, [e.get("name") or "" for e in endpoints], 3)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        raise api_error(404, error_codes.ENDPOINT_NOT_FOUND,
                        f"no endpoint named {name!r} that you may use{hint} (endpoints you may "
                        f"use: {_listing((e.get('name') or '' for e in endpoints), name)}); pass its "
                        "name or id (funcx endpoint list)")
    cands = "; ".join(f"{e.get('name')} = {eid} (owner {e.get('owner')})"
                      for eid, e in list(hits.items())[:SHOWN])
    raise api_error(400, error_codes.AMBIGUOUS_NAME,
                    f"{len(hits)} endpoints you may use are named {name!r}: {cands}; pass the "
                    "id of the one you mean")


def pick_function(name: str, version: int | None, versions: list[dict],
                  yours: Iterable[str] = ()) -> str:
    """The id ``name`` (or ``name@version``) means among the caller's own
    ``versions`` of it (GET /v2/functions?name=, latest first): the latest,
    or that version.  Else FUNCTION_NOT_FOUND naming your functions or the
    versions there are."""
    if versions:
        if version is None:
            return versions[0]["function_uuid"]
        for v in versions:
            if v.get("version") == version:
                return v["function_uuid"]
        have = ", ".join(str(v.get("version")) for v in versions[:SHOWN])
        raise api_error(404, error_codes.FUNCTION_NOT_FOUND,
                        f"your function {name!r} has no version {version} (versions: {have})")
    yours = list(yours)
    near = difflib.get_close_matches(name, yours, 3)
    hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    raise api_error(404, error_codes.FUNCTION_NOT_FOUND,
                    f"no function of yours named {name!r}{hint} (your functions: "
                    f"{_listing(yours, name)}); pass its name, NAME@VERSION or its id "
                    "(funcx function list)")


def unexpected_keywords(where: str, given: Iterable[str], known: Iterable[str]) -> TypeError:
    """The ``TypeError`` for keyword arguments ``where`` does not take, with
    the closest known spelling of each."""
    known = list(known)
    parts = []
    for k in sorted(given):
        near = difflib.get_close_matches(k, known, 1)
        parts.append(f"{k!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
    return TypeError(f"{where} got unexpected keyword argument(s) {', '.join(parts)}")


def require_ids(where: str, endpoint_id: str | None, function_id: str | None,
                extra: Iterable[str]) -> None:
    """``TypeError`` when ``endpoint_id`` or ``function_id`` is missing, naming a
    misspelling of it among the ``extra`` keywords (which would otherwise be
    passed to the function)."""
    missing = [n for n, v in (("endpoint_id", endpoint_id), ("function_id", function_id))
               if v is None]
    if not missing:
        return
    extra = list(extra)
    notes = []
    for m in missing:
        near = difflib.get_close_matches(m, extra, 1, cutoff=0.6)
        notes.append(f"{m}=" + (f" (you passed {near[0]}=)" if near else ""))
    raise TypeError(f"{where} needs {' and '.join(notes)}: the endpoint and the function to "
                    "run, each by id or name")


__all__ = ["as_uuid", "pick_endpoint", "pick_function", "require_ids",
           "split_version", "unexpected_keywords"]
