"""Where the SDK's bearer token comes from.

A *login manager* hands out the token (and, for funcX 1.0 compatibility,
the web client).  The default one reads ``$FUNCX_HOME/credentials/``; a
program can pass ``StaticTokenLoginManager(token)`` instead.

A token is handed over as a file (:func:`read_token_file`): the service's
own credentials file, a Globus-style token JSON, or the bare token.  No
message about such a file ever quotes any of its content: it may hold the
secret in any field, or be the secret.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from funcx.errors import FuncxError, NotLoggedIn
from funcx.home import stored_token

#: longest bearer token accepted (ours are 43 characters, Globus's under 100)
MAX_TOKEN_CHARS = 8192


class BadTokenFile(FuncxError):
    """A token (or a file meant to hold one) that cannot be a bearer token.
    Its message names the file and what is wrong, never what it holds."""


@dataclass(frozen=True)
class HandedToken:
    """A token read from what someone handed over, and the service it names
    (``service_url``, where the file says).  ``kind`` says which shape it was."""

    token: str = field(repr=False)
    kind: str
    service_url: str | None = None


def check_token_shape(token: str, source: str = "the token") -> str:
    """``token`` if it can be a bearer token (visible ASCII, no spaces, not
    huge), else :class:`BadTokenFile`.  Checked before anything is sent, so
    a wrong file never reaches the service or an HTTP library's errors."""
    if not token:
        raise BadTokenFile(f"{source} is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise BadTokenFile(f"{source} is {len(token)} characters long, more than a token can be "
                           f"({MAX_TOKEN_CHARS}); is this the right file?")
    if not all("!" <= c <= "~" for c in token):
        raise BadTokenFile(f"{source} has characters a bearer token cannot have (spaces, line "
                           "breaks, control or non-ASCII characters); is this the right file?")
    return token


def _from_json(rec: Any, source: str) -> HandedToken:
    if not isinstance(rec, dict):
        raise BadTokenFile(f"{source} holds a JSON {type(rec).__name__}, not an object with a "
                           '"token" (funcX credentials) or "access_token" (Globus) field')
    url = rec.get("service_url")
    url = url.rstrip("/") if isinstance(url, str) and url.startswith(("http://", "https://")) \
        else None
    for name, kind in (("token", "funcX credentials"), ("access_token", "Globus token")):
        if name in rec:
            value = rec[name]
            if not isinstance(value, str):
                raise BadTokenFile(f'the "{name}" field of {source} is a JSON '
                                   f"{type(value).__name__}, not a string")
            where = f'the "{name}" field of {source}'
            return HandedToken(check_token_shape(value.strip(), where), kind, url)
    by_server = rec.get("by_resource_server")  # a Globus SDK token response
    if isinstance(by_server, dict):
        found = [(k, v) for k, v in by_server.items()
                 if isinstance(v, dict) and isinstance(v.get("access_token"), str)]
        if len(found) > 1:  # the one for funcX / Globus Compute, if it is named so
            found = [(k, v) for k, v in found
                     if any(n in str(k).lower() for n in ("funcx", "compute"))]
        if len(found) == 1:
            where = f"the access token of {source}"
            return HandedToken(check_token_shape(found[0][1]["access_token"].strip(), where),
                               "Globus token", url)
    raise BadTokenFile(f'{source} is JSON but has no "token" (funcX credentials) or '
                       '"access_token" (Globus) field')


def parse_token_text(text: str, source: str = "the token") -> HandedToken:
    """The token in ``text``: the service's credentials JSON (``{"user",
    "user_id", "token", "service_url"}``, as ``funcx service start`` writes
    it), a Globus-style JSON (``"access_token"``, or ``by_resource_server``
    with one such), or the bare token (surrounding whitespace ignored)."""
    body = text.strip()
    if not body:
        raise BadTokenFile(f"{source} is empty")
    if body[0] in "{[":
        try:
            rec = json.loads(body)
        except (ValueError, RecursionError) as e:
            at = f" (line {e.lineno}, column {e.colno})" if isinstance(e, json.JSONDecodeError) \
                else ""
            raise BadTokenFile(f"{source} looks like JSON but does not parse{at}") from None
        return _from_json(rec, source)
    return HandedToken(check_token_shape(body, source), "bare token")


def read_token_file(path: str | Path) -> HandedToken:
    """:func:`parse_token_text` of the file at ``path`` (errors name the file)."""
    p = Path(path).expanduser()
    source = str(p)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise BadTokenFile(f"cannot read {source}: {e.strerror or type(e).__name__}") from None
    if len(raw) > 1 << 20:
        raise BadTokenFile(f"{source} is {len(raw)} bytes, too large to be a token file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadTokenFile(f"{source} is not UTF-8 text; is this the right file?") from None
    return parse_token_text(text, source)


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
    """The token written by ``funcx service start`` or ``funcx login`` under
    ``$FUNCX_HOME`` — or under ``home`` (``FuncXClient(funcx_home=DIR)``)."""

    def __init__(self, home: str | Path | None = None):
        self.home = Path(home).expanduser() if home is not None else None

    def _credentials(self) -> Path:
        if self.home is None:
            from funcx.home import credentials_path

            return credentials_path()
        return self.home / "credentials" / "token.json"

    def get_token(self) -> str:
        if self.home is None:
            tok = stored_token()
        else:
            from funcx.home import read_json

            rec = read_json(self._credentials())
            tok = rec.get("token") if rec else None
        if not tok:
            where = "$FUNCX_HOME" if self.home is None else str(self.home)
            raise NotLoggedIn(f"no token under {where}/credentials")
        return tok

    def service_url(self) -> str | None:
        """The service this home's token was issued by, or the one recorded
        there by ``funcx service start`` (None for ``$FUNCX_HOME``: the
        address resolution already looks there)."""
        if self.home is None:
            return None
        from funcx.home import read_json

        for rec, key in ((read_json(self.home / "service" / "service.json"), "url"),
                         (read_json(self._credentials()), "service_url")):
            url = rec.get(key) if rec else None
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return url
        return None

    def ensure_logged_in(self) -> None:
        self.get_token()

    def logout(self) -> bool:
        path = self._credentials()
        if path.exists():
            path.unlink()
            return True
        return False


def bearer_from_authorizer(authorizer: Any) -> str:
    """The bearer token a globus_sdk-style authorizer (``AccessTokenAuthorizer``,
    ``RefreshTokenAuthorizer``...) would send: from its
    ``get_authorization_header()`` ("Bearer <token>"), else its ``access_token``."""
    header = None
    getter = getattr(authorizer, "get_authorization_header", None)
    if callable(getter):
        header = getter()
    if isinstance(header, str) and header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        raise NotLoggedIn(f"the authorizer ({type(authorizer).__name__}) gives a "
                          f"{scheme!r} header, not a Bearer token")
    tok = getattr(authorizer, "access_token", None)
    if isinstance(tok, str) and tok:
        return tok
    raise NotLoggedIn(f"the authorizer ({type(authorizer).__name__}) gives no bearer token")


class AuthorizerLoginManager:
    """Tokens from a globus_sdk-style authorizer: ``FuncXClient(fx_authorizer=...)``,
    or the web client a Globus-Compute-shaped login manager hands out.  Asked
    on every request, so an authorizer that refreshes its token keeps working."""

    def __init__(self, authorizer: Any, owner: Any = None):
        self.authorizer, self.owner = authorizer, owner

    def get_token(self) -> str:
        return bearer_from_authorizer(self.authorizer)

    def ensure_logged_in(self) -> None:
        if self.owner is not None and hasattr(self.owner, "ensure_logged_in"):
            self.owner.ensure_logged_in()

    def logout(self) -> Any:
        if self.owner is not None and hasattr(self.owner, "logout"):
            return self.owner.logout()
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
    login`` with a valid token).  A token that cannot be one raises
    :class:`BadTokenFile` before anything is sent."""
    from funcx.home import credentials_path, write_private_json
    from funcx.sdk.web_client import WebClient

    if not token:
        raise ValueError("no token given")
    check_token_shape(token)
    web = WebClient(service_address, token)
    try:
        me = web.get("/v2/whoami")
    finally:
        web.close()
    write_private_json(credentials_path(), {"token": token, "user": me["username"],
                                            "user_id": me["user_id"],
                                            "service_url": service_address})
    return {"user": me["username"], "user_id": me["user_id"], "service": service_address}


def default_login_manager(service_address: str, home: str | Path | None = None):
    """Client credentials from the environment if set (they take priority over
    any other credentials), else the token stored under ``home`` (default
    ``$FUNCX_HOME``)."""
    import os

    cid, secret = os.environ.get("FUNCX_SDK_CLIENT_ID"), os.environ.get("FUNCX_SDK_CLIENT_SECRET")
    if cid and secret:
        return ClientCredentialsLoginManager(service_address, cid, secret)
    return LocalLoginManager(home)


def from_globus_compute_manager(manager: Any, base_url: str) -> AuthorizerLoginManager:
    """A Globus-Compute-shaped login manager (``get_auth_client``,
    ``get_web_client(base_url=...)``, ``ensure_logged_in``, ``logout``):
    the web client it hands out (a globus_sdk-style client) carries an
    authorizer, which gives the bearer token; requests go through our own
    connection."""
    if hasattr(manager, "ensure_logged_in"):
        manager.ensure_logged_in()
    web = manager.get_web_client(base_url=base_url)
    authorizer = getattr(web, "authorizer", None)
    if authorizer is None:
        raise TypeError(f"the web client {type(manager).__name__}.get_web_client() returned "
                        f"({type(web).__name__}) has no authorizer to take the token from")
    bearer_from_authorizer(authorizer)  # fail now, not at the first request
    return AuthorizerLoginManager(authorizer, owner=manager)
