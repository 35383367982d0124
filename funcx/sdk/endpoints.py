"""Endpoints as the SDK sees them: register, list, find by name, status,
metadata, the workers' hardware, delete -- the part of
:class:`funcx.sdk.client.FuncXClient` about endpoints rather than tasks."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from funcx.sdk.compat import IDENTITY_URN
from funcx.sdk.hardware import HardwareReport
from funcx.sdk.names import as_uuid, pick_endpoint
from funcx.sdk.reprs import SearchResults


class EndpointsMixin:
    """Endpoint calls of ``FuncXClient`` (they need its ``web_client``, its
    name cache and ``whoami``/``version_check``)."""

    web_client: Any
    _names: dict[tuple[str, str], tuple[float, str]]

    if TYPE_CHECKING:  # provided by FuncXClient and FunctionsMixin
        def whoami(self) -> dict: ...

        def version_check(self, endpoint_version: str | None = None) -> None: ...

        def _cached_name(self, kind: str, name: str) -> str | None: ...

        def _forget_names(self) -> None: ...

        def _get_quiet(self, path: str, params: dict) -> Any: ...

    def search_endpoint(self, q: str = "", scope: str = "all", owner_id: str | None = None
                        ) -> SearchResults:
        """Endpoints whose name contains ``q``: ``scope`` "my-endpoints" (yours),
        "shared-with-me" (public ones of others) or "all"."""
        if scope not in ("all", "my-endpoints", "shared-with-me"):
            raise ValueError("scope must be 'all', 'my-endpoints' or 'shared-with-me'")
        if owner_id:  # the documents' form: f"urn:globus:auth:identity:{owner_uuid}"
            owner_id = owner_id.removeprefix(IDENTITY_URN)
        me = self.whoami()["user_id"] if scope != "all" or owner_id else None
        eps = self.get_endpoints(role="owner" if scope == "my-endpoints" else "any")
        hits = [e for e in eps if q.lower() in f"{e.get('name')} {e.get('display_name')}".lower()
                and (scope != "shared-with-me" or e.get("owner") != me)
                and (owner_id is None or e.get("owner") == owner_id)]
        return SearchResults(hits, len(hits), 0)


    def register_endpoint(self, name: str, endpoint_uuid: str | None = None,
                          metadata: dict | None = None, endpoint_version: str | None = None,
                          description: str | None = None, *, endpoint_id: str | None = None,
                          public: bool = False,
                          allowed_functions: list[str] | None = None) -> dict:
        """Register (or update) an endpoint; return ``{"endpoint_id", ...}``
        (what its agent needs to connect).  The funcX 1.x signature
        ``(name, endpoint_uuid, metadata=None, endpoint_version=None)`` and
        0.x's ``description=`` both work: an ``endpoint_version`` older than
        the service allows raises ``VersionMismatch``, and it is recorded in
        the metadata with the description."""
        endpoint_id = endpoint_id or endpoint_uuid
        meta = dict(metadata or {})
        if endpoint_version is not None:
            self.version_check(endpoint_version=endpoint_version)
            meta.setdefault("endpoint_version", endpoint_version)
        if description is not None:
            meta.setdefault("description", description)
        body: dict[str, Any] = {"endpoint_name": name, "metadata": meta, "public": public}
        if allowed_functions is not None:
            body["allowed_functions"] = allowed_functions
        self._forget_names()
        if endpoint_id:
            return self.web_client.put(f"/v3/endpoints/{endpoint_id}", body)
        return self.web_client.post("/v3/endpoints", body)

    def get_endpoints(self, role: str = "owner") -> list[dict]:
        return self.web_client.get("/v2/endpoints", params={"role": role})

    def resolve_endpoint(self, name_or_id: str) -> str:
        """An endpoint id from an id or the name of an endpoint you may use (of
        several so named, your own).  An unknown name is ENDPOINT_NOT_FOUND
        naming the endpoints there are; an ambiguous one AMBIGUOUS_NAME naming
        the candidates' ids and owners."""
        eid = as_uuid(name_or_id)
        if eid is not None:
            return eid
        cached = self._cached_name("endpoint", name_or_id)
        if cached:
            return cached
        eps = self._get_quiet("/v2/endpoints", {"role": "any"})
        eid = pick_endpoint(name_or_id, eps, lambda: self.whoami()["user_id"])
        self._names[("endpoint", name_or_id)] = (time.monotonic(), eid)
        return eid

    def get_endpoint_metadata(self, endpoint_id: str) -> dict:
        """An endpoint's metadata (by id or name)."""
        return self.web_client.get(f"/v2/endpoints/{self.resolve_endpoint(endpoint_id)}")

    def get_endpoint_status(self, endpoint_id: str) -> dict:
        from funcx.sdk.reprs import EndpointStatus

        endpoint_id = self.resolve_endpoint(endpoint_id)
        st = EndpointStatus(self.web_client.get(f"/v2/endpoints/{endpoint_id}/status"))
        st.endpoint_id = endpoint_id
        return st

    def get_worker_hardware_details(self, endpoint_id: str) -> HardwareReport:
        """The hardware of an endpoint's workers, per manager (node): CPU model,
        logical cores, memory, each worker's pinned CPUs and accelerator, the
        GPUs nvidia-smi lists, as the managers reported it (no task runs; an
        offline endpoint has no managers).  ``print()`` it for a table.  Globus
        Compute's method of this name returns a task id instead; to ask from
        inside a worker, submit :func:`funcx.sdk.hardware.run_hardware_report`."""
        endpoint_id = self.resolve_endpoint(endpoint_id)
        return HardwareReport.from_status(endpoint_id, self.get_endpoint_status(endpoint_id))


    def delete_endpoint(self, endpoint_id: str) -> dict:
        """Delete one of your endpoints (by id or name)."""
        answer = self.web_client.delete(f"/v2/endpoints/{self.resolve_endpoint(endpoint_id)}")
        self._forget_names()
        return answer
