"""Who may call what: every route of the app × every kind of caller, against the
real service, each answer's exact status from one table.

Callers: the owner of the resources, a member of the local group a function is
shared with, another user, an anonymous caller (no header), a disabled user
(who is also a group member: disabling wins), and a revoked token of the owner.

The rule for 404 vs 403: a caller who may not see a resource gets 404 (a 403
would tell them it exists): another user's task, task group, private function,
private endpoint, group.  A caller who may see a resource but not change it
(a PUBLIC endpoint or function of someone else, a group function for a
member) gets 403.

The table is keyed (route, method, variant, caller).  The variant picks which
real resource the route is aimed at (e.g. a private or a public endpoint);
every (route, method) of ``create_app().url_map`` must have rows, so a new
route without expectations fails ``test_every_route_has_expectations``.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

import pytest
import requests

from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
PAYLOAD = SER.serialize_payload((21,), {})
CALLERS = ("owner", "member", "other", "anon", "disabled", "revoked")
RUN_ORDER = ("anon", "revoked", "disabled", "other", "member", "owner")  # owner last: it may destroy


def double(x):
    return 2 * x


# ----------------------------------------------------------------------------- the table
# (method, rule, variant, fresh, owner, member, other, anon, disabled, revoked)
# ``fresh``: the row changes or destroys its target, so it gets new resources.
# An int is the HTTP status; a pair (http, inner) also checks the per-task
# ``http_status_code`` of a /v2/submit answer.
X = 401  # not authenticated
S_OK, S_404 = (200, 200), (200, 404)
ROWS = [
    # identity -----------------------------------------------------------------------
    ("GET", "/v2/version", "", False, 200, 200, 200, 200, 200, 200),  # public
    ("GET", "/v2/openapi.json", "", False, 200, 200, 200, 200, 200, 200),  # public
    ("POST", "/v2/auth/token", "own-client", False, 200, 200, 200, 200, 401, 200),  # public
    ("POST", "/v2/auth/token", "wrong-secret", False, 401, 401, 401, 401, 401, 401),
    ("GET", "/v2/whoami", "", False, 200, 200, 200, X, X, X),
    ("POST", "/v2/logout", "", True, 200, 200, 200, X, X, X),
    # functions ----------------------------------------------------------------------
    ("POST", "/v2/functions", "", False, 200, 200, 200, X, X, X),
    ("POST", "/v2/functions", "group", False, 200, 200, 404, X, X, X),
    ("POST", "/v3/functions", "", False, 200, 200, 200, X, X, X),
    ("POST", "/v3/functions", "group", False, 200, 200, 404, X, X, X),
    ("GET", "/v2/functions", "", False, 200, 200, 200, X, X, X),
    ("GET", "/v2/functions/<fid>", "group-fn", False, 200, 200, 404, X, X, X),
    ("GET", "/v2/functions/<fid>", "private-fn", False, 200, 404, 404, X, X, X),
    ("GET", "/v2/functions/<fid>", "public-fn", False, 200, 200, 200, X, X, X),
    ("GET", "/v3/functions/<fid>", "group-fn", False, 200, 200, 404, X, X, X),
    ("GET", "/v3/functions/<fid>", "private-fn", False, 200, 404, 404, X, X, X),
    ("GET", "/v3/functions/<fid>", "public-fn", False, 200, 200, 200, X, X, X),
    ("DELETE", "/v2/functions/<fid>", "group-fn", True, 200, 403, 404, X, X, X),
    ("DELETE", "/v2/functions/<fid>", "private-fn", True, 200, 404, 404, X, X, X),
    ("DELETE", "/v2/functions/<fid>", "public-fn", True, 200, 403, 403, X, X, X),
    ("DELETE", "/v3/functions/<fid>", "group-fn", True, 200, 403, 404, X, X, X),
    ("DELETE", "/v3/functions/<fid>", "private-fn", True, 200, 404, 404, X, X, X),
    ("DELETE", "/v3/functions/<fid>", "public-fn", True, 200, 403, 403, X, X, X),
    # endpoints ----------------------------------------------------------------------
    ("POST", "/v2/endpoints", "new", False, 200, 200, 200, X, X, X),
    ("POST", "/v2/endpoints", "private-ep", True, 200, 404, 404, X, X, X),  # id in the body
    ("POST", "/v2/endpoints", "public-ep", True, 200, 403, 403, X, X, X),
    ("POST", "/v3/endpoints", "new", False, 200, 200, 200, X, X, X),
    ("POST", "/v3/endpoints", "private-ep", True, 200, 404, 404, X, X, X),
    ("POST", "/v3/endpoints", "public-ep", True, 200, 403, 403, X, X, X),
    ("GET", "/v2/endpoints", "", False, 200, 200, 200, X, X, X),
    ("GET", "/v3/endpoints", "", False, 200, 200, 200, X, X, X),
    ("PUT", "/v3/endpoints/<eid>", "private-ep", True, 200, 404, 404, X, X, X),
    ("PUT", "/v3/endpoints/<eid>", "public-ep", True, 200, 403, 403, X, X, X),
    ("GET", "/v2/endpoints/<eid>", "private-ep", False, 200, 404, 404, X, X, X),
    ("GET", "/v2/endpoints/<eid>", "public-ep", False, 200, 200, 200, X, X, X),
    ("GET", "/v3/endpoints/<eid>", "private-ep", False, 200, 404, 404, X, X, X),
    ("GET", "/v3/endpoints/<eid>", "public-ep", False, 200, 200, 200, X, X, X),
    ("GET", "/v2/endpoints/<eid>/status", "private-ep", False, 200, 404, 404, X, X, X),
    ("GET", "/v2/endpoints/<eid>/status", "public-ep", False, 200, 200, 200, X, X, X),
    ("GET", "/v3/endpoints/<eid>/status", "private-ep", False, 200, 404, 404, X, X, X),
    ("GET", "/v3/endpoints/<eid>/status", "public-ep", False, 200, 200, 200, X, X, X),
    ("DELETE", "/v2/endpoints/<eid>", "private-ep", True, 200, 404, 404, X, X, X),
    ("DELETE", "/v2/endpoints/<eid>", "public-ep", True, 200, 403, 403, X, X, X),
    ("DELETE", "/v3/endpoints/<eid>", "private-ep", True, 200, 404, 404, X, X, X),
    ("DELETE", "/v3/endpoints/<eid>", "public-ep", True, 200, 403, 403, X, X, X),
    ("POST", "/v3/endpoints/<eid>/lock", "private-ep", False, 200, 404, 404, X, X, X),
    ("POST", "/v3/endpoints/<eid>/lock", "public-ep", False, 200, 403, 403, X, X, X),
    ("GET", "/v3/endpoints/<eid>/allowed_functions", "private-ep", False,
     200, 404, 404, X, X, X),
    ("GET", "/v3/endpoints/<eid>/allowed_functions", "public-ep", False,
     200, 200, 200, X, X, X),
    ("GET", "/v2/endpoints/<eid>/whitelist", "private-ep", False, 200, 404, 404, X, X, X),
    ("GET", "/v2/endpoints/<eid>/whitelist", "public-ep", False, 200, 200, 200, X, X, X),
    ("POST", "/v2/endpoints/<eid>/whitelist", "private-ep", True, 200, 404, 404, X, X, X),
    ("POST", "/v2/endpoints/<eid>/whitelist", "public-ep", True, 200, 403, 403, X, X, X),
    ("DELETE", "/v2/endpoints/<eid>/whitelist/<fid>", "private-ep+private-fn", True,
     200, 404, 404, X, X, X),
    ("DELETE", "/v2/endpoints/<eid>/whitelist/<fid>", "public-ep+private-fn", True,
     200, 403, 403, X, X, X),
    # submit -------------------------------------------------------------------------
    ("POST", "/v3/endpoints/<eid>/submit", "public-ep+group-fn", False, 200, 200, 404, X, X, X),
    ("POST", "/v3/endpoints/<eid>/submit", "public-ep+public-fn", False, 200, 200, 200, X, X, X),
    ("POST", "/v3/endpoints/<eid>/submit", "public-ep+private-fn", False,
     200, 404, 404, X, X, X),
    ("POST", "/v3/endpoints/<eid>/submit", "private-ep+group-fn", False,
     200, 404, 404, X, X, X),
    # a task-group id someone else holds is answered like a fresh one (no existence
    # oracle): the member gets a private group under that id; the owner's is untouched
    ("POST", "/v3/endpoints/<eid>/submit", "public-ep+group-fn+owner-tg", False,
     200, 200, 404, X, X, X),
    ("POST", "/v2/submit", "public-ep+group-fn", False, S_OK, S_OK, S_404, X, X, X),
    ("POST", "/v2/submit", "public-ep+private-fn", False, S_OK, S_404, S_404, X, X, X),
    ("POST", "/v2/submit", "private-ep+group-fn", False, S_OK, S_404, S_404, X, X, X),
    ("POST", "/v2/submit", "public-ep+group-fn+owner-tg", False, S_OK, S_OK, S_404, X, X, X),
    # tasks and task groups (the task ran on the session's running endpoint) ---------
    ("GET", "/v2/tasks", "", False, 200, 200, 200, X, X, X),
    ("GET", "/v2/tasks", "owner-tg", False, 200, 200, 404, X, X, X),  # member: their own group
    ("GET", "/v2/tasks/<tid>", "", False, 200, 404, 404, X, X, X),
    ("POST", "/v2/tasks/<tid>/cancel", "", False, 200, 404, 404, X, X, X),
    # the matrix's task has a small result (text, no blob): the bytes route finds no
    # blob for anyone; a blob result's owner 200 / others 404 is tests/test_blobs_web.py's
    ("GET", "/v3/tasks/<tid>/result", "", False, 404, 404, 404, X, X, X),
    ("POST", "/v2/batch_status", "", False, 200, 200, 200, X, X, X),  # others: "unknown"
    # everyone gets 200 with an answer per id; another's task reads as unknown, uncancelled
    ("POST", "/v2/tasks/cancel", "", True, 200, 200, 200, X, X, X),
    # the member submitted under this id above, so for them it names their own group
    ("GET", "/v2/taskgroup/<tg>", "", False, 200, 200, 404, X, X, X),
    ("GET", "/v2/taskgroup/<tg>/events", "", False, 200, 200, 404, X, X, X),
    # containers: private unless registered public; another user's private
    # container is 404, exactly as a missing one
    ("POST", "/v2/containers", "", False, 200, 200, 200, X, X, X),
    ("GET", "/v2/containers", "", False, 200, 200, 200, X, X, X),
    ("GET", "/v2/containers/<cid>/<ctype>", "", False, 200, 404, 404, X, X, X),
    # groups -------------------------------------------------------------------------
    ("POST", "/v2/groups", "", False, 200, 200, 200, X, X, X),
    ("GET", "/v2/groups", "", False, 200, 200, 200, X, X, X),
    ("GET", "/v2/groups/<gid>", "", False, 200, 200, 404, X, X, X),
    ("POST", "/v2/groups/<gid>/members", "", False, 200, 403, 404, X, X, X),
    ("DELETE", "/v2/groups/<gid>/members/<user>", "self", True, 200, 200, 404, X, X, X),
    ("DELETE", "/v2/groups/<gid>/members/<user>", "someone-else", True,
     200, 403, 404, X, X, X),
]

EXPECT: dict[tuple[str, str, str, str], int | tuple[int, int]] = {}
for _m, _rule, _variant, _fresh, *_statuses in ROWS:
    for _caller, _status in zip(CALLERS, _statuses):
        key = (_rule, _m, _variant, _caller)
        assert key not in EXPECT, f"duplicate row {key}"
        EXPECT[key] = _status


# ------------------------------------------------------------------------ the resources
@dataclass
class Caller:
    name: str
    user: str | None = None  # user name
    uid: str | None = None
    token: str | None = None
    client: tuple[str, str] | None = None  # (client_id, client_secret)
    mint: object = None  # () -> a new token of this kind (for /v2/logout)

    def headers(self, fresh: bool = False) -> dict:
        tok = self.mint() if fresh and self.mint else self.token
        return {"Authorization": f"Bearer {tok}"} if tok else {}


@dataclass
class Ctx:
    service: str
    r: object
    owner_token: str
    callers: dict[str, Caller] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def call(self, method: str, path: str, headers: dict | None = None, **kw):
        return requests.request(method, self.service + path, timeout=30,
                                headers=headers or {}, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        resp = self.call(method, path, {"Authorization": f"Bearer {self.owner_token}"}, **kw)
        assert resp.status_code == 200, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json()

    # new resources of the owner
    def new_function(self, kind: str) -> str:
        # a description of its own: the same content registered again would be the
        # same function (issue 16), and a destructive case must not delete a shared one
        body = {"function_name": f"double_{kind.replace('-', '_')}_{self.tag}",
                "function_code": SER.serialize_function(double),
                "description": f"matrix {kind} {uuid.uuid4().hex[:8]}"}
        if kind == "group-fn":
            body["group"] = self.ids["gid"]
        if kind == "public-fn":
            body["public"] = True
        return self.ok("POST", "/v2/functions", json=body)["function_uuid"]

    def new_endpoint(self, kind: str) -> str:
        return self.ok("POST", "/v3/endpoints", json={
            "endpoint_name": f"matrix-{kind}-{self.tag}",
            "public": kind == "public-ep"})["endpoint_id"]

    def new_group(self, *members: str) -> str:
        gid = self.ok("POST", "/v2/groups", json={"name": f"matrix-fresh-{self.tag}"})["group_id"]
        for m in members:
            self.ok("POST", f"/v2/groups/{gid}/members", json={"user": m})
        return gid

    def targets(self, variant: str, fresh: bool) -> dict:
        t = {"fid": self.ids["group-fn"], "eid": self.ids["private-ep"], "tid": self.ids["tid"],
             "tg": self.ids["tg"], "cid": self.ids["cid"], "ctype": "docker",
             "gid": self.ids["gid"], "user": self.callers["member"].user}
        for part in variant.split("+"):
            if part.endswith("-fn"):
                t["fid"] = self.new_function(part) if fresh else self.ids[part]
            elif part.endswith("-ep"):
                t["eid"] = self.new_endpoint(part) if fresh else self.ids[part]
            elif part == "self":
                t["gid"] = self.new_group(self.callers["member"].user)
            elif part == "someone-else":
                t["gid"] = self.new_group(self.callers["member"].user, self.ids["third"])
                t["user"] = self.ids["third"]
        t["variant"] = variant
        return t


def _path(rule: str, t: dict) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: t[m.group(1)], rule)


def _request_kw(ctx: Ctx, method: str, rule: str, t: dict, caller: Caller) -> dict:
    """The body / query of one call."""
    v = t["variant"]
    tg = {"task_group_id": ctx.ids["tg"]} if "owner-tg" in v else {}
    if rule == "/v2/auth/token":
        cid, secret = caller.client
        return {"json": {"client_id": cid,
                         "client_secret": secret if v == "own-client" else secret + "x"}}
    if rule == "/v3/endpoints/<eid>/submit":
        return {"json": {"tasks": {t["fid"]: [PAYLOAD]}, **tg}}
    if rule == "/v2/submit":
        return {"json": {"tasks": [[t["fid"], t["eid"], PAYLOAD]], **tg}}
    if rule in ("/v2/functions", "/v3/functions") and method == "POST":
        body = {"function_name": f"reg_{ctx.tag}", "function_code": SER.serialize_function(double)}
        if v == "group":
            body["group"] = ctx.ids["gid"]
        return {"json": body}
    if rule in ("/v2/endpoints", "/v3/endpoints") and method == "POST":
        body = {"endpoint_name": f"matrix-reg-{ctx.tag}"}
        if v != "new":
            body.update(endpoint_id=t["eid"], public=v == "public-ep")
        return {"json": body}
    if rule == "/v3/endpoints/<eid>":
        return {"json": {"endpoint_name": f"matrix-put-{ctx.tag}", "public": v == "public-ep"}}
    if rule == "/v2/endpoints/<eid>/whitelist" and method == "POST":
        return {"json": {"func": [ctx.ids["private-fn"]]}}
    if rule in ("/v2/batch_status", "/v2/tasks/cancel"):
        return {"json": {"task_ids": [ctx.ids["tid"]]}}
    if rule == "/v2/containers" and method == "POST":
        return {"json": {"type": "docker", "location": "docker.io/library/python:3.11"}}
    if rule == "/v2/groups" and method == "POST":
        return {"json": {"name": f"matrix-new-{ctx.tag}"}}
    if rule == "/v2/groups/<gid>/members" and method == "POST":
        return {"json": {"user": ctx.ids["third"]}}
    if rule == "/v2/tasks" and v == "owner-tg":
        return {"params": {"task_group_id": ctx.ids["tg"]}}
    if rule == "/v2/functions" and method == "GET":
        return {"params": {"q": ctx.tag}}
    if rule == "/v2/version":
        return {"params": {"service": "all"}}
    if method in ("POST", "PUT"):
        return {"json": {}}
    return {}


def _observed(rule: str, resp: requests.Response) -> int | tuple[int, int]:
    if rule == "/v2/submit" and resp.status_code == 200:
        return 200, resp.json()["results"][0]["http_status_code"]
    return resp.status_code


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def url_map_routes(service):
    """(rule, method) of every route of the app, static excluded."""
    from live import service_redis_url

    from backend.app import create_app

    app = create_app(service_redis_url())
    return {(rule.rule, m) for rule in app.url_map.iter_rules() if rule.endpoint != "static"
            for m in rule.methods - {"HEAD", "OPTIONS"}}


@pytest.fixture(scope="module")
def ctx(service, endpoint, token, redis_client, fxc):
    from backend import admin
    from backend.store import users

    r = redis_client
    c = Ctx(service, r, token)
    owner_uid = fxc.whoami()["user_id"]

    def add(name: str) -> Caller:
        rec = admin.add_user(r, f"matrix-{name}-{c.tag}")
        return Caller(name, rec["user"], rec["user_id"], rec["token"],
                      users.create_client(r, rec["user_id"], f"{name}-client"),
                      mint=lambda uid=rec["user_id"]: users.issue_token(r, uid))

    owner_client = users.create_client(r, owner_uid, "matrix-owner-client")
    c.callers["owner"] = Caller("owner", fxc.whoami()["username"], owner_uid, token, owner_client,
                                mint=lambda: users.issue_token(r, owner_uid))
    c.callers["member"] = add("member")
    c.callers["other"] = add("other")
    c.callers["disabled"] = add("disabled")
    c.ids["third"] = add("third").user  # added to / removed from groups by the owner

    def revoked_token() -> str:
        tok = users.issue_token(r, owner_uid)
        assert users.revoke_token(r, tok)
        return tok

    c.callers["revoked"] = Caller("revoked", token=revoked_token(), client=owner_client,
                                  mint=revoked_token)
    c.callers["anon"] = Caller("anon", client=owner_client)

    # a local group through the SDK, the member (and the soon-disabled user) in it
    gid = fxc.create_group(f"matrix-{c.tag}", "authorization matrix")
    fxc.add_group_member(gid, c.callers["member"].user)
    fxc.add_group_member(gid, c.callers["disabled"].user)
    c.ids["gid"] = gid
    c.ids["group-fn"] = fxc.register_function(double, function_name=f"double_group_{c.tag}",
                                              description=f"matrix group {c.tag}", group=gid)
    c.ids["private-fn"] = c.new_function("private-fn")
    c.ids["public-fn"] = c.new_function("public-fn")
    c.ids["private-ep"] = c.new_endpoint("private-ep")
    c.ids["public-ep"] = c.new_endpoint("public-ep")
    c.ids["cid"] = c.ok("POST", "/v2/containers", json={
        "type": "docker", "location": "docker.io/library/python:3.11",
        "name": f"matrix-{c.tag}"})["container_id"]
    # a task run on the session's running endpoint, in a task group of its own
    tg = str(uuid.uuid4())
    sub = c.ok("POST", f"/v3/endpoints/{endpoint}/submit",
               json={"tasks": {c.ids["group-fn"]: [PAYLOAD]}, "task_group_id": tg})
    tid = sub["tasks"][c.ids["group-fn"]][0]
    c.ids.update(tid=tid, tg=tg)
    events = c.ok("GET", f"/v2/taskgroup/{tg}/events", params={"after": "0", "timeout": 30})
    assert [d["task_id"] for d in events["tasks"]] == [tid], events
    assert SER.deserialize(events["tasks"][0]["result"]) == 42

    admin.set_disabled(r, c.callers["disabled"].user)
    yield c
    admin.set_disabled(r, c.callers["disabled"].user, False)


# --------------------------------------------------------------------------------- tests
def test_every_route_has_expectations(url_map_routes):
    table = {(rule, m) for (rule, m, _v, _c) in EXPECT}
    missing = url_map_routes - table
    stale = table - url_map_routes
    assert not missing, f"routes without authorization expectations: {sorted(missing)}"
    assert not stale, f"expectations for routes the app no longer has: {sorted(stale)}"
    for rule, m in url_map_routes:
        for caller in CALLERS:
            assert any(k[:2] == (rule, m) and k[3] == caller for k in EXPECT), (rule, m, caller)


def test_authorization_matrix(ctx, url_map_routes, capsys):
    failures, checked = [], 0
    for method, rule, variant, fresh, *_ in ROWS:
        t = ctx.targets(variant, fresh)
        for name in RUN_ORDER:
            caller = ctx.callers[name]
            kw = _request_kw(ctx, method, rule, t, caller)
            headers = caller.headers(fresh=(rule == "/v2/logout"))
            resp = ctx.call(method, _path(rule, t), headers, **kw)
            got, want = _observed(rule, resp), EXPECT[(rule, method, variant, name)]
            checked += 1
            if got != want:
                failures.append(f"{method} {rule} [{variant}] as {name}: got {got}, "
                                f"want {want}: {resp.text[:200]}")
            if resp.status_code >= 400:  # every refusal is a JSON {code, message}
                body = resp.json()
                assert body.get("code") and body.get("message"), (method, rule, name, body)
            if resp.status_code == 401:
                assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")
    n_routes = len(url_map_routes)
    with capsys.disabled():
        print(f"\nauthorization matrix: {n_routes} routes (rule, method) x {len(CALLERS)} callers"
              f" = {n_routes * len(CALLERS)} pairs; {len(ROWS)} rows (with target variants)"
              f" x {len(CALLERS)} callers = {checked} requests checked")
    assert checked == len(ROWS) * len(CALLERS) == len(EXPECT)
    assert not failures, "\n".join(failures)


def test_destructive_denials_changed_nothing(ctx):
    """A 403/404 on a change leaves the resource as it was."""
    member, other = ctx.callers["member"], ctx.callers["other"]
    fid, eid, pub = ctx.ids["group-fn"], ctx.ids["private-ep"], ctx.ids["public-ep"]
    assert ctx.call("DELETE", f"/v2/functions/{fid}", member.headers()).status_code == 403
    assert ctx.call("DELETE", f"/v2/endpoints/{eid}", other.headers()).status_code == 404
    assert ctx.call("DELETE", f"/v2/endpoints/{pub}", other.headers()).status_code == 403
    assert ctx.call("PUT", f"/v3/endpoints/{pub}", other.headers(),
                    json={"endpoint_name": "hijack", "public": True}).status_code == 403
    assert ctx.ok("GET", f"/v2/functions/{fid}")["function_uuid"] == fid
    assert ctx.ok("GET", f"/v2/endpoints/{eid}")["uuid"] == eid
    assert ctx.ok("GET", f"/v2/endpoints/{pub}")["name"] == f"matrix-public-ep-{ctx.tag}"
    assert ctx.r.hget(f"fx:endpoint:{pub}", "owner") == ctx.callers["owner"].uid


def test_group_member_semantics(ctx):
    """A member may GET and run the group's function, not delete it, and the
    tasks they submit are theirs alone."""
    member, other, owner = ctx.callers["member"], ctx.callers["other"], ctx.callers["owner"]
    fid, pub = ctx.ids["group-fn"], ctx.ids["public-ep"]
    got = ctx.call("GET", f"/v2/functions/{fid}", member.headers())
    assert got.status_code == 200 and got.json()["group"] == ctx.ids["gid"]
    assert got.json()["function_code"] == SER.serialize_function(double)
    sub = ctx.call("POST", f"/v3/endpoints/{pub}/submit", member.headers(),
                   json={"tasks": {fid: [PAYLOAD]}})
    assert sub.status_code == 200, sub.text
    tid, tg = sub.json()["tasks"][fid][0], sub.json()["task_group_id"]
    assert ctx.r.hget(f"fx:task:{tid}", "owner") == member.uid
    assert ctx.call("GET", f"/v2/tasks/{tid}", member.headers()).status_code == 200
    for who in (owner, other):  # not even the function's owner sees the member's task
        assert ctx.call("GET", f"/v2/tasks/{tid}", who.headers()).status_code == 404
        assert ctx.call("GET", f"/v2/taskgroup/{tg}", who.headers()).status_code == 404
        assert ctx.call("POST", f"/v2/tasks/{tid}/cancel", who.headers()).status_code == 404
        st = ctx.call("POST", "/v2/batch_status", who.headers(), json={"task_ids": [tid]})
        assert st.json()["results"][tid]["status"] == "unknown"
        nobody = str(uuid.uuid4())  # another's task is answered as a task nobody has
        many = ctx.call("POST", "/v2/tasks/cancel", who.headers(), json={"task_ids": [tid, nobody]})
        assert many.status_code == 200, many.text
        answers = many.json()["results"]
        assert answers[tid] == answers[nobody] and answers[tid]["cancelled"] is False, many.text
    assert ctx.r.hget(f"fx:task:{tid}", "status") != "cancelled"  # nobody else cancelled it
    # nor can the owner add tasks to the member's task group: the same id names a
    # private group of the owner's (answered as a fresh id would be)
    resp = ctx.call("POST", f"/v3/endpoints/{pub}/submit", owner.headers(),
                    json={"tasks": {fid: [PAYLOAD]}, "task_group_id": tg})
    assert resp.status_code == 200 and resp.json()["task_group_id"] == tg
    owners_tid = resp.json()["tasks"][fid][0]
    members = ctx.call("GET", f"/v2/taskgroup/{tg}", member.headers()).json()
    assert [t["id"] for t in members["tasks"]] == [tid]
    owners = ctx.call("GET", f"/v2/taskgroup/{tg}", owner.headers()).json()
    assert [t["id"] for t in owners["tasks"]] == [owners_tid]
    assert ctx.call("DELETE", f"/v2/functions/{fid}", member.headers()).status_code == 403


def test_listings_show_only_what_the_caller_may_see(ctx):
    member, other = ctx.callers["member"], ctx.callers["other"]

    def get(caller, path, **params):
        resp = ctx.call("GET", path, caller.headers(), params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    for who in (member, other):
        eps = {e["uuid"] for e in get(who, "/v2/endpoints", role="any")}
        assert ctx.ids["public-ep"] in eps and ctx.ids["private-ep"] not in eps
        assert ctx.ids["tid"] not in {t["task_id"] for t in get(who, "/v2/tasks")["tasks"]}
        assert ctx.ids["cid"] not in {c["container_id"]
                                      for c in get(who, "/v2/containers")["containers"]}
        st = ctx.call("POST", "/v2/batch_status", who.headers(),
                      json={"task_ids": [ctx.ids["tid"]]}).json()["results"][ctx.ids["tid"]]
        assert st["status"] == "unknown" and "result" not in st
    seen = {f["function_uuid"] for f in get(member, "/v2/functions", q=ctx.tag, limit=100)["results"]}
    assert {ctx.ids["group-fn"], ctx.ids["public-fn"]} <= seen and ctx.ids["private-fn"] not in seen
    seen = {f["function_uuid"] for f in get(other, "/v2/functions", q=ctx.tag, limit=100)["results"]}
    assert ctx.ids["public-fn"] in seen
    assert not seen & {ctx.ids["group-fn"], ctx.ids["private-fn"]}
    assert ctx.ids["gid"] in {g["group_id"] for g in get(member, "/v2/groups")["groups"]}
    assert ctx.ids["gid"] not in {g["group_id"] for g in get(other, "/v2/groups")["groups"]}
    # whoami answers for the caller, not for anyone else
    assert get(member, "/v2/whoami")["user_id"] == member.uid
    assert get(other, "/v2/whoami")["user_id"] == other.uid
