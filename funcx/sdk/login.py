"""Where the SDK's bearer token comes from.

A *login manager* hands out the token (and, for funcX 1.0 compatibility,
the web client).  The default one reads ``$FUNCX_HOME/credentials/``; a
program can pass ``StaticTokenLoginManager(token)`` instead.
"""
from __future__ import annotations

from typing import Protocol

from funcx.errors import NotLoggedIn
from funcx.home import stored_token


class LoginManager(Protocol):
    def get_token(self) -> str: ...
    def ensure_logged_in(self) -> None: ...
    def logout(self) -> bool: ...


class StaticTokenLoginManager:
    """Use one known bearer token (a service account, a test)."""

    def __init__(self, token: str):
        self.token = token

    def get_token(self) -> str:
        return self.token

    def ensure_logged_in(self) -> None:
        return None

    def logout(self) -> bool:
        return False


class LocalLoginManager:
    """The token written by ``funcx service start`` or ``funcx login``."""

    def get_token(self) -> str:
        tok = stored_token()
        if not tok:
            raise NotLoggedIn("no token under $FUNCX_HOME/credentials")
        return tok

    def ensure_logged_in(self) -> None:
        self.get_token()

    def logout(self) -> bool:
        from funcx.home import credentials_path

        path = credentials_path()
        if path.exists():
            path.unlink()
            return True
        return False


class ClientCredentialsLoginManager:
    """A service account: ``FUNCX_SDK_CLIENT_ID`` / ``FUNCX_SDK_CLIENT_SECRET``
    exchanged for a bearer token on first use (they take priority over a
    stored token)."""

    def __init__(self, service_address: str, client_id: str, client_secret: str):
        self.service_address = service_address
        self.client_id, self._secret = client_id, client_secret
        self._token: str | None = None

    def get_token(self) -> str:
        if self._token is None:
            from funcx.sdk.web_client import WebClient

            web = WebClient(self.service_address)
            resp = web.post("/v2/auth/token", {"client_id": self.client_id,
                                              "client_secret": self._secret})
            self._token = resp["access_token"]
            web.close()
        return self._token

    def ensure_logged_in(self) -> None:
        self.get_token()

    def logout(self) -> bool:
        self._token = None
        return True


def login_with_token(service_address: str, token: str) -> dict:
    """Check ``token`` with the service and store it as this machine's
    credentials (0600); return ``{"user", "user_id", "service"}``.

    Nothing is stored if the service refuses the token: the
    :class:`funcx.errors.Unauthorized` it raised propagates (run ``funcx
    login`` with a valid token)."""
    from funcx.home import credentials_path, write_private_json
    from funcx.sdk.web_client import WebClient

    if not token:
        raise ValueError("no token given")
    web = WebClient(service_address, token)
    try:
        me = web.get("/v2/whoami")
    finally:
        web.close()
    write_private_json(credentials_path(), {"token": token, "user": me["username"],
                                            "user_id": me["user_id"],
                                            "service_url": service_address})
    return {"user": me["username"], "user_id": me["user_id"], "service": service_address}


def default_login_manager(service_address: str):
    """Client credentials from the environment if set, else the stored token."""
    import os

    cid, secret = os.environ.get("FUNCX_SDK_CLIENT_ID"), os.environ.get("FUNCX_SDK_CLIENT_SECRET")
    if cid and secret:
        return ClientCredentialsLoginManager(service_address, cid, secret)
    return LocalLoginManager()
