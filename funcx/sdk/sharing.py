"""Who may use what: an endpoint's function whitelist, groups, and the
containers functions run in -- the part of :class:`funcx.sdk.client.FuncXClient`
that manages sharing rather than running tasks."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any


class SharingMixin:
    """Whitelist, group and container calls of ``FuncXClient`` (they need its
    ``web_client``, ``get_endpoints`` and ``register_endpoint``)."""

    web_client: Any

    if TYPE_CHECKING:  # provided by FuncXClient
        def get_endpoints(self, role: str = "owner") -> list[dict]: ...

        def register_endpoint(self, name: str, *args: Any, **kwargs: Any) -> dict: ...

        def resolve_endpoint(self, name_or_id: str) -> str: ...

        def resolve_function(self, name_or_id: str) -> str: ...

    def get_whitelist(self, endpoint_id: str) -> list[str]:
        """The functions an endpoint is restricted to (endpoint by id or name)."""
        endpoint_id = self.resolve_endpoint(endpoint_id)
        return self.web_client.get(f"/v2/endpoints/{endpoint_id}/whitelist")["result"]

    def add_to_whitelist(self, endpoint_id: str, function_ids: list[str] | str) -> list[str]:
        """Allow functions (ids or names of yours) on an endpoint (id or name)."""
        ids = [function_ids] if isinstance(function_ids, str) else list(function_ids)
        ids = [self.resolve_function(f) for f in ids]
        endpoint_id = self.resolve_endpoint(endpoint_id)
        return self.web_client.post(f"/v2/endpoints/{endpoint_id}/whitelist", {"func": ids})["result"]

    def delete_from_whitelist(self, endpoint_id: str, function_ids: list[str] | str) -> list[str]:
        """Disallow functions (ids or names of yours) on an endpoint (id or name)."""
        ids = [function_ids] if isinstance(function_ids, str) else list(function_ids)
        ids = [self.resolve_function(f) for f in ids]
        endpoint_id = self.resolve_endpoint(endpoint_id)
        result: list[str] = []
        for fid in ids:
            result = self.web_client.delete(f"/v2/endpoints/{endpoint_id}/whitelist/{fid}")["result"]
        return result

    # ----------------------------------------------------------------- groups
    def create_group(self, name: str, description: str = "") -> str:
        return self.web_client.post("/v2/groups", {"name": name,
                                                   "description": description})["group_id"]

    def get_groups(self) -> list[dict]:
        return self.web_client.get("/v2/groups")["groups"]

    def add_group_member(self, group_id: str, user: str) -> dict:
        return self.web_client.post(f"/v2/groups/{group_id}/members", {"user": user})

    def remove_group_member(self, group_id: str, user: str) -> dict:
        return self.web_client.delete(f"/v2/groups/{group_id}/members/{user}")

    # ------------------------------------------------------------- containers
    def register_container(self, location: str, container_type: str, name: str = "",
                           description: str = "") -> str:
        body = {"location": location, "type": container_type, "name": name,
                "description": description}
        return self.web_client.post("/v2/containers", body)["container_id"]

    def get_container(self, container_uuid: str, container_type: str) -> dict:
        return self.web_client.get(f"/v2/containers/{container_uuid}/{container_type}")["container"]

    def get_containers(self, name: str | None = None, description: str | None = None
                       ) -> list[dict] | tuple[str, list[dict]]:
        """Your containers.  With ``name`` (the 0.x reference: "register a DLHub
        endpoint and get the containers to launch"): your endpoint of that name
        (registered now, with ``description``, if you have none) and your
        containers, as ``(endpoint_id, containers)``."""
        containers = self.web_client.get("/v2/containers")["containers"]
        if name is None:
            return containers
        mine = [e["uuid"] for e in self.get_endpoints(role="owner")
                if name in (e.get("name"), e.get("display_name"))]
        if mine:
            eid = mine[0]
        else:
            eid = self.register_endpoint(name, description=description)["endpoint_id"]
        return eid, containers
