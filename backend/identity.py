"""Who a bearer token belongs to, and which groups they are in.

``local`` mode (default): users, tokens and groups live in Redis.
``globus`` mode (``FUNCX_AUTH=globus``): tokens are validated by Globus Auth
token introspection (globus-sdk), identities are Globus identity ids, and
groups come from Globus Groups; both answers are cached briefly.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol

import redis

from backend.store import groups as group_store
from backend.store import users
from backend.store.users import Identity, hash_token
from funcx.defaults import setting
from funcx.protocol import error_codes


class IdentityProvider(Protocol):
    def authenticate(self, token: str) -> Identity | None: ...
    def groups_of(self, identity: Identity, token: str) -> set[str]: ...


class LocalProvider:
    def __init__(self, r: redis.Redis):
        self.r = r

    def authenticate(self, token: str) -> Identity | None:
        return users.authenticate(self.r, token)

    def groups_of(self, identity: Identity, token: str) -> set[str]:
        return group_store.of_user(self.r, identity.user_id)


class _TTLCache:
    def __init__(self, ttl: float):
        self.ttl = ttl
        self._data: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: str):
        with self._lock:
            hit = self._data.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
            self._data.pop(key, None)
            return None

    def put(self, key: str, value: object, ttl: float | None = None) -> None:
        with self._lock:
            if len(self._data) > 10_000:
                self._data.clear()
            self._data[key] = (time.monotonic() + (self.ttl if ttl is None else ttl), value)


class GlobusProvider:
    """Globus Auth introspection and Globus Groups, through globus-sdk."""

    GROUPS_RS = "groups.api.globus.org"

    def __init__(self, r: redis.Redis, client_id: str, client_secret: str):
        import globus_sdk

        if not client_id or not client_secret:
            raise RuntimeError("FUNCX_AUTH=globus needs FUNCX_GLOBUS_CLIENT_ID and "
                               "FUNCX_GLOBUS_CLIENT_SECRET (a confidential client of this service)")
        self.r = r
        self.auth = globus_sdk.ConfidentialAppAuthClient(client_id, client_secret)
        self.tokens = _TTLCache(float(setting("AUTH_CACHE_S")))
        self.group_cache = _TTLCache(float(setting("AUTH_CACHE_S")))

    def authenticate(self, token: str) -> Identity | None:
        key = hash_token(token)
        hit = self.tokens.get(key)
        if hit is not None:
            if hit and self._refused(*hit):
                return None  # disabling takes effect at once, cached or not
            return hit[0] if hit else None
        resp = self._call(self.auth.oauth2_token_introspect, token, include="identity_set")
        if not resp.get("active"):
            self.tokens.put(key, False)
            return None
        ident = Identity(resp["sub"], resp.get("username") or resp["sub"])
        # a local record for each Globus identity, so it can be disabled like any user
        users.ensure_external(self.r, ident.user_id, ident.name)
        if self._refused(ident, resp.get("iat")):
            return None
        ttl = float(setting("AUTH_CACHE_S"))
        if resp.get("exp"):
            ttl = max(0.0, min(ttl, float(resp["exp"]) - time.time()))
        self.tokens.put(key, (ident, resp.get("iat")), ttl)
        return ident

    def _refused(self, ident: Identity, issued_at) -> bool:
        """Disabled now, or the token (its introspected ``iat``) predates the
        identity's last disable: re-enabling does not revive it."""
        disabled, valid_after = users.access(self.r, ident.user_id)
        return disabled == "1" or (issued_at is not None
                                   and users.issued_before_disable(issued_at, valid_after))

    @staticmethod
    def _call(fn, *args, **kwargs):
        """A Globus call; its failure is the service's problem (503), not the caller's."""
        import globus_sdk

        from backend.api_errors import ApiError

        try:
            return fn(*args, **kwargs)
        except (globus_sdk.GlobusAPIError, globus_sdk.NetworkError) as e:
            raise ApiError(503, error_codes.AUTH_UNAVAILABLE,
                           f"Globus Auth could not be asked ({type(e).__name__}); retry later",
                           {"Retry-After": "10"}) from None

    def groups_of(self, identity: Identity, token: str) -> set[str]:
        import globus_sdk

        hit = self.group_cache.get(identity.user_id)
        if hit is not None:
            return hit
        dep = self._call(self.auth.oauth2_get_dependent_tokens, token).by_resource_server
        if self.GROUPS_RS not in dep:
            return set()
        gc = globus_sdk.GroupsClient(
            authorizer=globus_sdk.AccessTokenAuthorizer(dep[self.GROUPS_RS]["access_token"]))
        found = {g["id"] for g in gc.get_my_groups()}
        self.group_cache.put(identity.user_id, found)
        return found


def make_provider(r: redis.Redis) -> IdentityProvider:
    mode = str(setting("AUTH")).lower()
    if mode == "local":
        return LocalProvider(r)
    if mode == "globus":
        return GlobusProvider(r, str(setting("GLOBUS_CLIENT_ID")),
                              str(setting("GLOBUS_CLIENT_SECRET")))
    raise RuntimeError(f"FUNCX_AUTH must be 'local' or 'globus', not {mode!r}")
