"""Globus mode (``FUNCX_AUTH=globus``) of the real service code, against a
LOCAL STAND-IN of the Globus Auth and Globus Groups APIs.

The real Globus Auth (auth.globus.org) and Groups (groups.api.globus.org) are
on the internet; these tests do not reach them.  The stand-in below is a small
Flask app on a loopback port that implements just what the service calls:

- ``POST /v2/oauth2/token/introspect`` (Auth): ``{"active": true, "sub",
  "username", "exp", ...}`` for tokens it issued, ``{"active": false}``
  otherwise; it checks the calling client's HTTP basic auth.
- ``POST /v2/oauth2/token`` with ``grant_type=urn:globus:auth:grant_type:dependent_token``
  (Auth): a token for the resource server ``groups.api.globus.org``.
- ``GET /v2/groups/my_groups`` (Groups): the groups of that token's identity.

globus-sdk is pointed at it with its own environment overrides
(``GLOBUS_SDK_ENVIRONMENT``, ``GLOBUS_SDK_SERVICE_URL_AUTH``,
``GLOBUS_SDK_SERVICE_URL_GROUPS``: see globus_sdk/config/environments.py), and
our app runs as a real HTTP server (werkzeug) in this process.
"""
from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import Counter

import pytest
import requests
from flask import Flask, jsonify, request
from live import Server, service_redis_url

from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
CLIENT_ID = str(uuid.uuid4())
CLIENT_SECRET = secrets.token_urlsafe(24)
GROUPS_RS = "groups.api.globus.org"
DEPENDENT = "urn:globus:auth:grant_type:dependent_token"


def double(x):
    return 2 * x


class GlobusStandIn:
    """A stand-in for Globus Auth + Groups; counts every call."""

    def __init__(self):
        self.users: dict[str, dict] = {}  # access token -> {"sub", "username", "exp", "active"}
        self.groups_tokens: dict[str, str] = {}  # groups token -> sub
        self.my_groups: dict[str, list[str]] = {}  # sub -> group ids
        self.calls: Counter = Counter()  # (kind, token) -> count
        self.clients_seen: set[str] = set()
        self.refused = 0
        self.lock = threading.Lock()
        self.app = self._make_app()

    def identity(self, username: str, groups: list[str] = (), exp_in: float = 3600) -> tuple[str, str]:
        """A new identity and an access token for it: (sub, token)."""
        sub = str(uuid.uuid4())
        tok = "globus-" + secrets.token_urlsafe(16)
        self.users[tok] = {"sub": sub, "username": username, "exp": time.time() + exp_in,
                           "active": True}
        self.my_groups[sub] = list(groups)
        return sub, tok

    def _client_ok(self) -> bool:
        auth = request.authorization
        ok = auth is not None and auth.type == "basic" and \
            (auth.username, auth.password) == (CLIENT_ID, CLIENT_SECRET)
        with self.lock:
            if auth is not None and auth.username:
                self.clients_seen.add(auth.username)
            self.refused += 0 if ok else 1
        return ok

    def _make_app(self) -> Flask:
        app = Flask("globus-stand-in")

        def unauthorized():
            return jsonify({"errors": [{"code": "UNAUTHORIZED", "status": "401"}],
                            "error": "invalid_client"}), 401

        @app.post("/v2/oauth2/token/introspect")
        def introspect():
            if not self._client_ok():
                return unauthorized()
            tok = request.form.get("token", "")
            with self.lock:
                self.calls["introspect", tok] += 1
            rec = self.users.get(tok)
            if rec is None or not rec["active"]:
                return jsonify({"active": False})
            return jsonify({"active": True, "sub": rec["sub"], "username": rec["username"],
                            "exp": int(rec["exp"]), "client_id": str(uuid.uuid4()),
                            "scope": "https://auth.globus.org/scopes/funcx/all",
                            "aud": [CLIENT_ID], "identity_set": [rec["sub"]]})

        @app.post("/v2/oauth2/token")
        def token():
            if not self._client_ok():
                return unauthorized()
            if request.form.get("grant_type") != DEPENDENT:
                return jsonify({"error": "unsupported_grant_type"}), 400
            tok = request.form.get("token", "")
            with self.lock:
                self.calls["dependent", tok] += 1
            rec = self.users.get(tok)
            if rec is None or not rec["active"]:
                return jsonify({"error": "invalid_grant"}), 401
            gtok = "groups-" + secrets.token_urlsafe(16)
            self.groups_tokens[gtok] = rec["sub"]
            return jsonify([{"access_token": gtok, "resource_server": GROUPS_RS,
                             "scope": f"urn:globus:auth:scope:{GROUPS_RS}:view_my_groups_and_memberships",
                             "token_type": "Bearer", "expires_in": 172800}])

        @app.get("/v2/groups/my_groups")
        def my_groups():
            header = request.headers.get("Authorization", "")
            sub = self.groups_tokens.get(header.removeprefix("Bearer "))
            if sub is None:
                return jsonify({"code": "AUTHENTICATION_ERROR"}), 401
            with self.lock:
                self.calls["my_groups", sub] += 1
            return jsonify([{"id": g, "name": f"group {g[:8]}", "group_type": "regular",
                             "my_memberships": [{"identity_id": sub, "role": "member",
                                                 "status": "active"}]}
                            for g in self.my_groups[sub]])

        return app


@pytest.fixture(scope="module")
def globus():
    stand_in = GlobusStandIn()
    srv = Server(stand_in.app)
    stand_in.url = srv.url
    yield stand_in
    srv.close()


@pytest.fixture(scope="module")
def globus_env(globus, service):
    """The environment of a service in Globus mode; restored after the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNCX_AUTH", "globus")
        mp.setenv("FUNCX_GLOBUS_CLIENT_ID", CLIENT_ID)
        mp.setenv("FUNCX_GLOBUS_CLIENT_SECRET", CLIENT_SECRET)
        mp.setenv("FUNCX_RATE_LIMIT_ENABLED", "0")
        mp.setenv("GLOBUS_SDK_ENVIRONMENT", "sandbox")  # never production, even if one URL slips
        mp.setenv("GLOBUS_SDK_SERVICE_URL_AUTH", globus.url + "/")
        mp.setenv("GLOBUS_SDK_SERVICE_URL_GROUPS", globus.url + "/")
        yield mp


@pytest.fixture(scope="module")
def app_url(globus_env):
    from backend.app import create_app
    from backend.identity import GlobusProvider

    app = create_app(service_redis_url())  # after the environment is set
    assert isinstance(app.extensions["funcx_identity"], GlobusProvider)
    srv = Server(app)
    yield srv.url
    srv.close()


def call(base: str, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, base + path, headers=headers, timeout=30, **kw)


def test_env_overrides_point_globus_sdk_at_the_stand_in(globus, globus_env):
    import globus_sdk
    from globus_sdk.config import get_service_url

    assert get_service_url("auth") == globus.url + "/"
    assert get_service_url("groups") == globus.url + "/"
    assert globus_sdk.ConfidentialAppAuthClient(CLIENT_ID, CLIENT_SECRET).base_url.startswith(globus.url)


def test_a_globus_token_is_accepted_and_whoami_is_the_identity(globus, app_url):
    sub, tok = globus.identity("alice@example.org")
    resp = call(app_url, "GET", "/v2/whoami", tok)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"user_id": sub, "username": "alice@example.org"}
    assert globus.calls["introspect", tok] == 1
    assert CLIENT_ID in globus.clients_seen  # the service authenticated as its own client


@pytest.mark.parametrize("kind", ["unknown", "inactive"])
def test_an_inactive_token_is_401(globus, app_url, kind):
    if kind == "unknown":
        tok = "globus-never-issued-" + secrets.token_urlsafe(8)
    else:
        _, tok = globus.identity("bob@example.org")
        globus.users[tok]["active"] = False
    resp = call(app_url, "GET", "/v2/whoami", tok)
    assert resp.status_code == 401 and resp.json()["code"] == "UNAUTHORIZED"
    assert globus.calls["introspect", tok] == 1
    assert tok not in resp.text


def test_introspection_is_cached(globus, app_url):
    sub, tok = globus.identity("carol@example.org")
    n = 8
    for _ in range(n):
        resp = call(app_url, "GET", "/v2/whoami", tok)
        assert resp.status_code == 200 and resp.json()["user_id"] == sub
    assert globus.calls["introspect", tok] == 1, f"{n} requests, want 1 introspection"


def test_a_token_past_its_exp_is_not_cached(globus, app_url):
    """Globus says active but the token's exp has passed by our clock (skew):
    accept it now, but do not trust it again without asking."""
    _, tok = globus.identity("dave@example.org", exp_in=-2)
    for _ in range(3):
        assert call(app_url, "GET", "/v2/whoami", tok).status_code == 200
    assert globus.calls["introspect", tok] == 3


def test_globus_group_sharing(globus, app_url, redis_client):
    gid = str(uuid.uuid4())
    owner_sub, owner = globus.identity("owner@example.org", groups=[gid])
    member_sub, member = globus.identity("member@example.org", groups=[gid, str(uuid.uuid4())])
    _, outsider = globus.identity("outsider@example.org", groups=[str(uuid.uuid4())])

    # the group ids the service sees are those of Globus Groups' my_groups
    listed = call(app_url, "GET", "/v2/groups", member)
    assert listed.status_code == 200
    assert gid in {g["group_id"] for g in listed.json()["groups"]}
    assert call(app_url, "POST", "/v2/groups", member, json={"name": "x"}).json()["code"] == \
        "GROUPS_ARE_GLOBUS"

    reg = call(app_url, "POST", "/v2/functions", owner, json={
        "function_name": "double", "function_code": SER.serialize_function(double), "group": gid})
    assert reg.status_code == 200, reg.text
    fid = reg.json()["function_uuid"]
    assert redis_client.hget(f"fx:fn:{fid}", "owner") == owner_sub
    # sharing with a group one is not in is refused, as not found
    assert call(app_url, "POST", "/v2/functions", outsider, json={
        "function_name": "d", "function_code": SER.serialize_function(double),
        "group": gid}).status_code == 404
    eid = call(app_url, "POST", "/v3/endpoints", owner,
               json={"endpoint_name": "globus-pub", "public": True}).json()["endpoint_id"]

    got = call(app_url, "GET", f"/v2/functions/{fid}", member)
    assert got.status_code == 200 and got.json()["group"] == gid
    sub = call(app_url, "POST", f"/v3/endpoints/{eid}/submit", member,
               json={"tasks": {fid: [SER.serialize_payload((21,), {})]}})
    assert sub.status_code == 200, sub.text
    tid = sub.json()["tasks"][fid][0]
    assert redis_client.hget(f"fx:task:{tid}", "owner") == member_sub
    assert call(app_url, "GET", f"/v2/tasks/{tid}", member).status_code == 200
    assert call(app_url, "GET", f"/v2/tasks/{tid}", owner).status_code == 404
    assert call(app_url, "DELETE", f"/v2/functions/{fid}", member).status_code == 403

    assert call(app_url, "GET", f"/v2/functions/{fid}", outsider).status_code == 404
    assert call(app_url, "POST", f"/v3/endpoints/{eid}/submit", outsider,
                json={"tasks": {fid: [SER.serialize_payload((21,), {})]}}).status_code == 404
    # group lookups are cached too: one dependent-token grant and one my_groups per identity
    assert globus.calls["dependent", member] == 1 and globus.calls["my_groups", member_sub] == 1
    from funcx.protocol.streams import decode_task_entry

    assert sum(len(decode_task_entry(f)) for _, f in redis_client.xrange(f"fx:ep:{eid}:tasks")) == 1


def test_a_disabled_identity_is_401(globus, app_url, redis_client):
    sub, tok = globus.identity("erin@example.org")
    assert call(app_url, "GET", "/v2/whoami", tok).status_code == 200  # cached now
    rec = redis_client.hgetall(f"fx:user:{sub}")
    assert rec["name"] == "erin@example.org" and rec["disabled"] == "0"
    redis_client.hset(f"fx:user:{sub}", "disabled", "1")
    resp = call(app_url, "GET", "/v2/whoami", tok)  # at once, cache or not
    assert resp.status_code == 401 and resp.json()["code"] == "UNAUTHORIZED"
    _, tok2 = globus.identity("erin@example.org")
    globus.users[tok2]["sub"] = sub  # another token of the same identity
    assert call(app_url, "GET", "/v2/whoami", tok2).status_code == 401
    redis_client.hset(f"fx:user:{sub}", "disabled", "0")
    assert call(app_url, "GET", "/v2/whoami", tok).status_code == 200


def test_wrong_client_secret_is_refused_by_globus_and_not_leaked(globus, globus_env):
    """A service with the wrong client secret cannot introspect: it answers an
    error (never 200), and neither secret nor token shows in the body."""
    from backend.app import create_app

    globus_env.setenv("FUNCX_GLOBUS_CLIENT_SECRET", "wrong-" + CLIENT_SECRET)
    try:
        srv = Server(create_app(service_redis_url()))
    finally:
        globus_env.setenv("FUNCX_GLOBUS_CLIENT_SECRET", CLIENT_SECRET)
    try:
        _, tok = globus.identity("frank@example.org")
        before = globus.refused
        resp = call(srv.url, "GET", "/v2/whoami", tok)
        assert resp.status_code >= 500 and resp.json()["code"], resp.text
        assert globus.refused == before + 1
        assert CLIENT_SECRET not in resp.text and tok not in resp.text
    finally:
        srv.close()
