"""Registering, versioning, finding and resolving functions: the part of
:class:`funcx.sdk.client.FuncXClient` about functions.

Registering the same content again (same serialized code, name, description,
sharing) answers with the same function id: the service dedupes per owner by
a hash of the content, so a script or a ``FuncXExecutor`` may register on
every run without making duplicates.  New content under a name you already
use becomes that name's next *version*; a name resolves to its latest
version, ``NAME@N`` to version N, and every version stays runnable by id.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from funcx.sdk import names
from funcx.sdk.compat import warn_once
from funcx.sdk.limits import payload_bytes
from funcx.sdk.remote_globals import (
    MissingGlobalWarning,
    missing_globals,
    ships_as_source,
    warning_text,
)
from funcx.sdk.reprs import SearchResults
from funcx.sdk.web_client import WebClient
from funcx.serialize import FuncXSerializer
from funcx.serialize.facade import pack_buffers, unpack_buffers

#: how long a name -> id resolution is reused by one client (registering or
#: deleting through it forgets them at once)
NAME_CACHE_S = 30.0
_FUNCX_DIR = os.path.dirname(os.path.dirname(__file__)) + os.sep  # .../funcx/ as imported


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside the funcx package (the
    user's call), for warnings that should point at it."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_FUNCX_DIR):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


class FunctionsMixin:
    """Function calls of ``FuncXClient`` (they need its ``web_client`` and
    ``fx_serializer``, and its ``_check_size``)."""

    web_client: Any
    fx_serializer: FuncXSerializer
    _names: dict[tuple[str, str], tuple[float, str]]

    if TYPE_CHECKING:  # provided by FuncXClient
        def _check_size(self, decoded: int, encoded: int, what: str) -> None: ...

    # ------------------------------------------------------------ registering
    def register_function(self, function: Callable, function_name: str | None = None,
                          container_uuid: str | None = None, description: str | None = None,
                          public: bool = False, group: str | None = None,
                          searchable: bool = True,
                          serializer: FuncXSerializer | None = None) -> str:
        """Register ``function``; return its function id.

        The same content registered again returns the same id (no duplicate);
        changed code under a name you already use is that name's next version
        (see :meth:`function_versions`).  Warns with :class:`MissingGlobalWarning`
        when the function reads module-level names that will not exist where it
        runs.  ``serializer``: serialize it with this one instead of the client's
        (e.g. ``ComputeSerializer(strategy_code=AllCodeStrategies())``)."""
        return self.register_function_info(
            function, function_name, container_uuid, description, public, group,
            searchable, serializer)["function_uuid"]

    def register_function_info(self, function: Callable, function_name: str | None = None,
                               container_uuid: str | None = None,
                               description: str | None = None, public: bool = False,
                               group: str | None = None, searchable: bool = True,
                               serializer: FuncXSerializer | None = None) -> dict:
        """:meth:`register_function`, answering ``{"function_uuid",
        "function_name", "version", "reused"}`` (``reused``: this content was
        registered already, and its id is answered)."""
        code = (serializer or self.fx_serializer).serialize_function(function)
        self._check_size(payload_bytes(code), len(code), "the function's code")
        self.check_globals(function, code)
        body: dict[str, Any] = {
            "function_name": function_name or getattr(function, "__name__", "function"),
            "function_code": code,
            "description": description if description is not None else (function.__doc__ or ""),
            "public": public,
            "searchable": searchable,
        }
        if container_uuid:
            body["container_uuid"] = container_uuid
        if group:
            body["group"] = group
        if isinstance(self.web_client, WebClient):
            answer = self.web_client.post("/v2/functions", body, params={"detail": "1"})
        else:  # a funcX 1.0 login manager's client: the plain answer
            answer = self.web_client.post("/v2/functions", body)
        self._forget_names()
        return {"function_name": body["function_name"], "version": None, "reused": None,
                **answer}

    def register_source_code(self, source: str, function_name: str,
                             description: str | None = None, metadata: dict | None = None,
                             public: bool = False, group: str | None = None) -> str:
        """Register Python ``source`` that defines ``function_name``; return the
        function id (Globus Compute 4.x).  The source travels as plain text
        (``PureSourceTextInspect``): the endpoint runs it and calls that function,
        whatever Python or dill either side has."""
        if not function_name.isidentifier():
            raise ValueError(f"function_name {function_name!r} is not a Python identifier")
        try:
            compile(source, f"<source of {function_name}>", "exec")
        except SyntaxError as e:
            raise ValueError(f"the source does not compile: {e}") from None
        code = pack_buffers([f"st\n{function_name}:{source}"])
        self._check_size(payload_bytes(code), len(code), "the function's code")
        body: dict[str, Any] = {"function_name": function_name, "function_code": code,
                                "description": description or "", "public": public}
        if metadata:
            body["meta"] = metadata
        if group:
            body["group"] = group
        answer = self.web_client.post("/v2/functions", body)
        self._forget_names()
        return answer["function_uuid"]

    @staticmethod
    def check_globals(function: Callable, code: str | None = None) -> list[str]:
        """Warn (:class:`MissingGlobalWarning`) about the global names ``function``
        uses that will not exist where it runs: where it is shipped as source
        (a function of an importable module), its module's globals stay behind.
        Return those names.  ``code``: its serialized form, if made already."""
        if code is None:
            code = FuncXSerializer().serialize_function(function)
        buffers = unpack_buffers(code)
        if not buffers or not ships_as_source(buffers[0]):
            return []  # dill by value (scripts, notebooks): the globals travel with it
        missing = missing_globals(function)
        if missing:
            warnings.warn(warning_text(function, missing), MissingGlobalWarning,
                          stacklevel=_caller_stacklevel())
        return [n for n, _ in missing]

    # ---------------------------------------------------------------- finding
    def search_function(self, q: str, offset: int = 0, limit: int = 10,
                        advanced: bool = False) -> SearchResults:
        """Functions you may run (your own, shared with your groups, public)
        whose name or description contains ``q``; prints as a table.  Functions
        registered ``searchable=False`` are never listed (``get_function``
        still reads them).  ``advanced=True`` (Globus Search query syntax) is
        accepted with a warning: ``q`` is matched as plain text."""
        if advanced:
            warn_once("search_function:advanced", "search_function(advanced=True) is accepted "
                      "but this service has no Globus Search query syntax: q is matched as "
                      "plain text in function names and descriptions")
        return self._search_functions(q, offset, limit)

    def list_functions(self, limit: int = 100) -> SearchResults:
        """Your own functions, newest first, every version, those registered
        ``searchable=False`` included (``funcx function list``).  Each says its
        ``version`` and whether it is the ``latest`` of its name.  The service
        filters by owner (``mine=1``), so others' public functions never crowd
        yours out of the page, and ``total`` counts yours."""
        return self._search_functions("", 0, limit, include_unsearchable=True, mine=True)

    def function_versions(self, name: str, limit: int = 100,
                          version: int | None = None) -> SearchResults:
        """Your versions of the function ``name``, latest first (each with its
        ``function_uuid``, ``version``, ``created_at``); ``version``: only that one."""
        params: dict[str, Any] = {"name": name, "limit": limit}
        if version is not None:
            params["version"] = version
        resp = self._get_quiet("/v2/functions", params)
        return SearchResults(resp["results"], resp["total"], 0)

    def _search_functions(self, q: str, offset: int, limit: int,
                          include_unsearchable: bool = False, mine: bool = False) -> SearchResults:
        params: dict[str, Any] = {"q": q, "offset": offset, "limit": limit}
        if include_unsearchable:  # your own searchable=False ones too (name lookups)
            params["include_unsearchable"] = "1"
        if mine:  # your own only, filtered by the service
            params["mine"] = "1"
        resp = self.web_client.get("/v2/functions", params=params)
        return SearchResults(resp["results"], resp["total"], offset)

    def get_function(self, function_id: str) -> dict:
        """A function's document (``function_id``: an id, a name of yours, or
        ``NAME@VERSION``), with its ``version``."""
        return self.web_client.get(f"/v2/functions/{self.resolve_function(function_id)}")

    def delete_function(self, function_id: str) -> dict:
        """Delete one function (one version: a name then means its latest left)."""
        answer = self.web_client.delete(f"/v2/functions/{self.resolve_function(function_id)}")
        self._forget_names()
        return answer

    # -------------------------------------------------------------- resolving
    def resolve_function(self, name_or_id: str) -> str:
        """A function id from an id, the name of one of your functions (its
        latest version) or ``NAME@VERSION``; FUNCTION_NOT_FOUND names your
        functions (or that name's versions) when there is no such one."""
        fid = names.as_uuid(name_or_id)
        if fid is not None:
            return fid
        cached = self._cached_name("function", name_or_id)
        if cached:
            return cached
        versions = list(self.function_versions(name_or_id, limit=1))
        base, version = name_or_id, None
        if not versions:
            base, version = names.split_version(name_or_id)
            if version is not None:  # that version, else (for the error) the ones there are
                versions = list(self.function_versions(base, version=version)) or list(
                    self.function_versions(base, limit=20))
        yours: list[str] = []
        if not versions:
            yours = [h["function_name"] for h in self.list_functions(limit=100)]
        fid = names.pick_function(base, version, versions, yours)
        self._names[("function", name_or_id)] = (time.monotonic(), fid)
        return fid

    def _cached_name(self, kind: str, name: str) -> str | None:
        hit = self._names.get((kind, name))
        if hit is not None and time.monotonic() - hit[0] < NAME_CACHE_S:
            return hit[1]
        return None

    def _forget_names(self) -> None:
        self._names.clear()

    def _get_quiet(self, path: str, params: dict) -> Any:
        """A lookup GET that the client's request throttle does not count."""
        if isinstance(self.web_client, WebClient):
            return self.web_client.get(path, params=params, throttle=False)
        return self.web_client.get(path, params=params)
