"""The REST contract's answers to bad input (shared/API.md): exact status and a
JSON ``{"code", "message"}`` body, and a refused submit never queues anything.

Submits go to endpoints registered here and never started, so their task
streams are quiet and every change to them is ours.
"""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

import pytest
import requests

from funcx.serialize import FuncXSerializer

LIMIT = int(os.environ["FUNCX_MAX_PAYLOAD_BYTES"])  # set by conftest: 1 MiB
SER = FuncXSerializer()
PAYLOAD = SER.serialize_payload((7,), {})
TASK_FIELDS = {"task_id", "status", "result", "exception", "completion_t", "details", "reason",
               "task_group_id", "exception_data"}


def triple(a, b=1):
    return a * b


def _rand() -> str:
    return str(uuid.uuid4())


# ------------------------------------------------------------------ helpers
def assert_error(resp: requests.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, f"{resp.status_code} {resp.text[:300]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json")
    body = resp.json()
    assert isinstance(body, dict), body
    assert body.get("code") == code, body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    return body


def _count(r, pattern: str) -> int:
    return sum(1 for _ in r.scan_iter(match=pattern, count=10_000))


def tasks_queued(r, eid: str) -> int:
    """Tasks in an endpoint's stream (each entry holds a batch of tasks)."""
    from funcx.protocol.streams import decode_task_entry

    return sum(len(decode_task_entry(f)) for _, f in r.xrange(f"fx:ep:{eid}:tasks") if f)


@contextmanager
def nothing_queued(r, *eids: str):
    """Assert that the block adds no task entry, task record or task group."""
    def snapshot():
        return ([tasks_queued(r, e) for e in eids],
                _count(r, "fx:task:*"), _count(r, "fx:tg:*"))

    before = snapshot()
    yield
    assert snapshot() == before


class Api:
    """A requests session for one token, with short helpers."""

    def __init__(self, base: str, token: str | None):
        self.base = base
        self.s = requests.Session()
        if token is not None:
            self.s.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return self.s.request(method, self.base + path, timeout=30, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        resp = self.call(method, path, **kw)
        assert resp.status_code == 200, resp.text[:300]
        return resp.json()


@pytest.fixture(scope="module")
def api(service, token):
    a = Api(service, token)
    yield a
    a.s.close()


@pytest.fixture(scope="module")
def anon(service):
    a = Api(service, None)
    yield a
    a.s.close()


@pytest.fixture(scope="module")
def other_token(redis_client):
    """A second user of the same service."""
    from backend.store import users

    uid = users.create_user(redis_client, f"other-{uuid.uuid4().hex[:8]}")
    return users.issue_token(redis_client, uid)


@pytest.fixture(scope="module")
def other(service, other_token):
    a = Api(service, other_token)
    yield a
    a.s.close()


@pytest.fixture(scope="module")
def fid(api):
    return api.ok("POST", "/v3/functions", json={
        "function_name": "triple", "function_code": SER.serialize_function(triple)})["function_uuid"]


@pytest.fixture(scope="module")
def fid2(api):
    return api.ok("POST", "/v2/functions", json={
        "function_name": "triple2", "function_code": SER.serialize_function(triple)})["function_uuid"]


@pytest.fixture(scope="module")
def quiet(api):
    """A registered endpoint that never runs: its task stream is ours alone."""
    return api.ok("POST", "/v3/endpoints",
                  json={"endpoint_name": f"quiet-{uuid.uuid4().hex[:8]}"})["endpoint_id"]


@pytest.fixture(scope="module")
def quiet2(api):
    return api.ok("POST", "/v3/endpoints",
                  json={"endpoint_name": f"quiet2-{uuid.uuid4().hex[:8]}"})["endpoint_id"]


@pytest.fixture(scope="module")
def restricted(api, fid2):
    """A quiet endpoint that allows only ``fid2``."""
    return api.ok("POST", "/v3/endpoints", json={
        "endpoint_name": f"restricted-{uuid.uuid4().hex[:8]}",
        "allowed_functions": [fid2]})["endpoint_id"]


@pytest.fixture(scope="module")
def queued(api, quiet, fid):
    """One task waiting on the quiet endpoint, and its task group."""
    tg = _rand()
    resp = api.ok("POST", f"/v3/endpoints/{quiet}/submit",
                  json={"tasks": {fid: [PAYLOAD]}, "task_group_id": tg})
    return resp["tasks"][fid][0], tg


@pytest.fixture(scope="module")
def ids(fid, quiet, queued):
    tid, tg = queued
    return {"fid": fid, "eid": quiet, "tid": tid, "tg": tg}


# ------------------------------------------------------------ authentication
def test_version_needs_no_token(anon):
    resp = anon.get("/v2/version", params={"service": "all"})
    assert resp.status_code == 200
    body = resp.json()
    assert {"api", "min_sdk_version", "min_ep_version"} <= body.keys()


ROUTES = [
    ("GET", "/v2/functions/{fid}"), ("DELETE", "/v2/functions/{fid}"),
    ("GET", "/v3/functions/{fid}"), ("POST", "/v2/functions"), ("POST", "/v3/functions"),
    ("POST", "/v3/endpoints/{eid}/submit"), ("POST", "/v2/submit"),
    ("GET", "/v2/tasks/{tid}"), ("POST", "/v2/batch_status"),
    ("GET", "/v2/taskgroup/{tg}"), ("GET", "/v2/taskgroup/{tg}/events"),
    ("GET", "/v2/endpoints"), ("GET", "/v3/endpoints"), ("GET", "/v2/endpoints/{eid}"),
    ("GET", "/v2/endpoints/{eid}/status"), ("POST", "/v3/endpoints"), ("POST", "/v2/endpoints"),
    ("PUT", "/v3/endpoints/{eid}"), ("DELETE", "/v2/endpoints/{eid}"),
    ("POST", "/v3/endpoints/{eid}/lock"), ("GET", "/v3/endpoints/{eid}/allowed_functions"),
    ("GET", "/v2/endpoints/{eid}/whitelist"), ("POST", "/v2/endpoints/{eid}/whitelist"),
    ("DELETE", "/v2/endpoints/{eid}/whitelist/{fid}"),
    ("POST", "/v2/containers"), ("GET", "/v2/containers/{fid}/docker"),
    ("GET", "/v2/functions"), ("DELETE", "/v3/functions/{fid}"), ("GET", "/v3/endpoints/{eid}"),
    ("GET", "/v3/endpoints/{eid}/status"), ("DELETE", "/v3/endpoints/{eid}"),
    ("GET", "/v2/containers"), ("GET", "/v2/tasks"), ("POST", "/v2/tasks/{tid}/cancel"),
    ("GET", "/v2/whoami"), ("POST", "/v2/logout"),
    ("GET", "/v2/no-such-route"),  # unauthenticated callers cannot probe routes either
]


def _body_for(path: str, ids: dict) -> dict:
    if path.endswith("/submit") and path.startswith("/v3"):
        return {"tasks": {ids["fid"]: [PAYLOAD]}}
    if path == "/v2/submit":
        return {"tasks": [[ids["fid"], ids["eid"], PAYLOAD]]}
    if path == "/v2/batch_status":
        return {"task_ids": [ids["tid"]]}
    if "functions" in path:
        return {"function_name": "f", "function_code": "x"}
    if "whitelist" in path:
        return {"func": [ids["fid"]]}
    if "containers" in path:
        return {"type": "docker", "location": "x"}
    return {"endpoint_name": "nope"}


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_token_is_401_everywhere(anon, api, ids, redis_client, method, path):
    url = path.format(**ids)
    kw = {"json": _body_for(path, ids)} if method in ("POST", "PUT") else {}
    with nothing_queued(redis_client, ids["eid"]):
        resp = anon.call(method, url, **kw)
    assert_error(resp, 401, "UNAUTHORIZED")
    assert resp.headers.get("WWW-Authenticate", "").lower().startswith("bearer")
    # and the refused call changed nothing
    assert api.get(f"/v2/functions/{ids['fid']}").status_code == 200
    assert api.get(f"/v2/endpoints/{ids['eid']}").status_code == 200
    assert api.ok("GET", f"/v2/tasks/{ids['tid']}")["status"] == "waiting-for-ep"


@pytest.mark.parametrize("header", [
    "Bearer fx_not-a-real-token", "Bearer {token}x", "Basic {token}", "Bearer", "Bearer   ",
    "{token}",
])
def test_bad_token_is_401(service, token, ids, redis_client, header):
    h = {"Authorization": header.format(token=token)}
    with nothing_queued(redis_client, ids["eid"]):
        for method, path in (("GET", f"/v2/tasks/{ids['tid']}"),
                             ("POST", f"/v3/endpoints/{ids['eid']}/submit")):
            resp = requests.request(method, service + path, headers=h, timeout=30,
                                    json={"tasks": {ids["fid"]: [PAYLOAD]}})
            assert_error(resp, 401, "UNAUTHORIZED")


def test_revoked_token_is_401(service, redis_client):
    from backend.store import users

    uid = users.create_user(redis_client, f"revoked-{uuid.uuid4().hex[:8]}")
    tok = users.issue_token(redis_client, uid)
    h = {"Authorization": f"Bearer {tok}"}
    assert requests.get(f"{service}/v2/endpoints", headers=h, timeout=30).status_code == 200
    assert users.revoke_token(redis_client, tok)
    assert_error(requests.get(f"{service}/v2/endpoints", headers=h, timeout=30), 401, "UNAUTHORIZED")


# ------------------------------------------------------------------ unknown ids
def test_unknown_ids_are_404(api):
    r = _rand()
    assert_error(api.get(f"/v2/functions/{r}"), 404, "FUNCTION_NOT_FOUND")
    assert_error(api.call("DELETE", f"/v2/functions/{r}"), 404, "FUNCTION_NOT_FOUND")
    assert_error(api.get(f"/v2/endpoints/{r}"), 404, "ENDPOINT_NOT_FOUND")
    assert_error(api.get(f"/v2/endpoints/{r}/status"), 404, "ENDPOINT_NOT_FOUND")
    assert_error(api.call("DELETE", f"/v2/endpoints/{r}"), 404, "ENDPOINT_NOT_FOUND")
    assert_error(api.get(f"/v3/endpoints/{r}/allowed_functions"), 404, "ENDPOINT_NOT_FOUND")
    assert_error(api.get(f"/v2/endpoints/{r}/whitelist"), 404, "ENDPOINT_NOT_FOUND")
    body = assert_error(api.get(f"/v2/tasks/{r}"), 404, "TASK_NOT_FOUND")
    assert r in body["message"]
    assert_error(api.get(f"/v2/taskgroup/{r}"), 404, "TASK_GROUP_NOT_FOUND")
    assert_error(api.get(f"/v2/taskgroup/{r}/events"), 404, "TASK_GROUP_NOT_FOUND")
    assert_error(api.get(f"/v2/containers/{r}/docker"), 404, "CONTAINER_NOT_FOUND")


def test_submit_to_unknown_ids_is_404_and_queues_nothing(api, redis_client, quiet, fid):
    r = _rand()
    with nothing_queued(redis_client, quiet):
        assert_error(api.post(f"/v3/endpoints/{r}/submit", json={"tasks": {fid: [PAYLOAD]}}),
                     404, "ENDPOINT_NOT_FOUND")
        body = assert_error(api.post(f"/v3/endpoints/{quiet}/submit",
                                     json={"tasks": {r: [PAYLOAD]}}), 404, "FUNCTION_NOT_FOUND")
        assert r in body["message"]
        # a known function next to an unknown one: the whole request is refused
        assert_error(api.post(f"/v3/endpoints/{quiet}/submit",
                              json={"tasks": {fid: [PAYLOAD, PAYLOAD], r: [PAYLOAD]}}),
                     404, "FUNCTION_NOT_FOUND")
        assert_error(api.post("/v2/functions", json={"function_code": "x", "container_uuid": r}),
                     404, "CONTAINER_NOT_FOUND")


def test_other_users_things_are_404(api, other, redis_client, queued, quiet, fid):
    tid, tg = queued
    theirs = other.ok("POST", "/v3/endpoints",
                      json={"endpoint_name": f"other-{uuid.uuid4().hex[:6]}"})["endpoint_id"]
    their_fid = other.ok("POST", "/v3/functions",
                         json={"function_code": SER.serialize_function(triple)})["function_uuid"]
    assert_error(other.get(f"/v2/tasks/{tid}"), 404, "TASK_NOT_FOUND")
    assert_error(other.get(f"/v2/taskgroup/{tg}"), 404, "TASK_GROUP_NOT_FOUND")
    assert_error(other.get(f"/v2/functions/{fid}"), 404, "FUNCTION_NOT_FOUND")
    assert_error(other.get(f"/v2/endpoints/{quiet}"), 404, "ENDPOINT_NOT_FOUND")
    assert_error(other.call("DELETE", f"/v2/endpoints/{quiet}"), 404, "ENDPOINT_NOT_FOUND")
    assert other.ok("POST", "/v2/batch_status", json={"task_ids": [tid]})["results"][tid][
        "status"] == "unknown"
    with nothing_queued(redis_client, quiet, theirs):
        assert_error(other.post(f"/v3/endpoints/{quiet}/submit",
                                json={"tasks": {their_fid: [PAYLOAD]}}), 404, "ENDPOINT_NOT_FOUND")
        assert_error(other.post(f"/v3/endpoints/{theirs}/submit",
                                json={"tasks": {fid: [PAYLOAD]}}), 404, "FUNCTION_NOT_FOUND")
    # someone else's task-group id is answered as a fresh one would be (no
    # existence oracle): a private group of the caller's, the owner's untouched
    sub = other.ok("POST", f"/v3/endpoints/{theirs}/submit",
                   json={"tasks": {their_fid: [PAYLOAD]}, "task_group_id": tg})
    assert sub["task_group_id"] == tg
    assert [t["id"] for t in api.ok("GET", f"/v2/taskgroup/{tg}")["tasks"]] == [tid]
    assert [t["id"] for t in other.ok("GET", f"/v2/taskgroup/{tg}")["tasks"]] == \
        sub["tasks"][their_fid]
    # still there for their owner
    assert api.get(f"/v2/endpoints/{quiet}").status_code == 200
    assert api.ok("GET", f"/v2/tasks/{tid}")["status"] == "waiting-for-ep"


def test_others_may_run_public_things_but_not_change_them(api, other):
    pub_ep = api.ok("POST", "/v3/endpoints", json={"endpoint_name": f"pub-{uuid.uuid4().hex[:6]}",
                                                   "public": True})["endpoint_id"]
    pub_fn = api.ok("POST", "/v3/functions", json={"function_code": "x", "public": True})[
        "function_uuid"]
    assert other.get(f"/v2/endpoints/{pub_ep}").status_code == 200
    assert other.get(f"/v2/functions/{pub_fn}").status_code == 200
    assert_error(other.call("DELETE", f"/v2/endpoints/{pub_ep}"), 403, "FORBIDDEN")
    assert_error(other.call("DELETE", f"/v2/functions/{pub_fn}"), 403, "FORBIDDEN")
    assert_error(other.call("PUT", f"/v3/endpoints/{pub_ep}", json={"endpoint_name": "x"}),
                 403, "FORBIDDEN")
    assert api.get(f"/v2/endpoints/{pub_ep}").json()["name"].startswith("pub-")
    assert api.get(f"/v2/functions/{pub_fn}").status_code == 200


# --------------------------------------------------------------- non-UUID ids
@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "0" * 33])
def test_non_uuid_ids_are_400(api, redis_client, quiet, fid, bad):
    for method, path in (("GET", f"/v2/functions/{bad}"), ("DELETE", f"/v2/functions/{bad}"),
                         ("GET", f"/v2/tasks/{bad}"), ("GET", f"/v2/endpoints/{bad}"),
                         ("GET", f"/v2/endpoints/{bad}/status"), ("GET", f"/v2/taskgroup/{bad}"),
                         ("GET", f"/v2/taskgroup/{bad}/events"),
                         ("GET", f"/v2/containers/{bad}/docker")):
        body = assert_error(api.call(method, path), 400, "BAD_REQUEST")
        assert bad in body["message"]
    with nothing_queued(redis_client, quiet):
        assert_error(api.post(f"/v3/endpoints/{bad}/submit", json={"tasks": {fid: [PAYLOAD]}}),
                     400, "BAD_REQUEST")
        assert_error(api.post(f"/v3/endpoints/{quiet}/submit", json={"tasks": {bad: [PAYLOAD]}}),
                     400, "BAD_REQUEST")
        assert_error(api.post(f"/v3/endpoints/{quiet}/submit",
                              json={"tasks": {fid: [PAYLOAD]}, "task_group_id": bad}),
                     400, "BAD_REQUEST")
        assert_error(api.post("/v2/submit", json={"tasks": [[fid, quiet, PAYLOAD]],
                                                  "task_group_id": bad}), 400, "BAD_REQUEST")
    assert_error(api.post("/v2/batch_status", json={"task_ids": [bad]}), 400, "BAD_REQUEST")
    assert_error(api.post("/v3/endpoints", json={"endpoint_name": "x", "allowed_functions": [bad]}),
                 400, "BAD_REQUEST")
    assert_error(api.post("/v3/functions", json={"function_code": "x", "group": bad}),
                 400, "BAD_REQUEST")


# -------------------------------------------------------------- malformed JSON
@pytest.mark.parametrize("data", ["{bad json", '{"tasks": ', "", "null", "[]", '"tasks"', "42"])
def test_malformed_json_is_400(api, redis_client, quiet, data):
    h = {"Content-Type": "application/json"}
    with nothing_queued(redis_client, quiet):
        for path in (f"/v3/endpoints/{quiet}/submit", "/v2/submit", "/v3/functions",
                     "/v2/functions", "/v2/batch_status", "/v3/endpoints",
                     f"/v2/endpoints/{quiet}/whitelist", "/v2/containers"):
            body = assert_error(api.post(path, data=data, headers=h), 400, "BAD_REQUEST")
            assert "JSON object" in body["message"], path
        assert_error(api.call("PUT", f"/v3/endpoints/{quiet}", data=data, headers=h),
                     400, "BAD_REQUEST")


# ----------------------------------------------------------------- wrong types
def test_submit_wrong_types_are_400(api, redis_client, quiet, fid):
    url = f"/v3/endpoints/{quiet}/submit"
    cases = [
        ({}, "tasks"),
        ({"tasks": None}, "tasks"),
        ({"tasks": [PAYLOAD]}, "tasks"),
        ({"tasks": PAYLOAD}, "tasks"),
        ({"tasks": {fid: PAYLOAD}}, "list"),
        ({"tasks": {fid: {"0": PAYLOAD}}}, "list"),
        ({"tasks": {fid: [7]}}, "string"),
        ({"tasks": {fid: [PAYLOAD, None]}}, "string"),
        ({"tasks": {fid: [PAYLOAD, {"args": [1]}]}}, "string"),
        ({"tasks": {fid: [PAYLOAD]}, "task_group_id": 5}, "task_group_id"),
        ({"tasks": {fid: [PAYLOAD]}, "resource_specification": "big"}, "resource_specification"),
        ({"tasks": {fid: [PAYLOAD]}, "user_endpoint_config": [1]}, "user_endpoint_config"),
    ]
    with nothing_queued(redis_client, quiet):
        for body, word in cases:
            err = assert_error(api.post(url, json=body), 400, "BAD_REQUEST")
            assert word in err["message"], (body, err)


def test_v2_submit_wrong_types_are_400(api, redis_client, quiet, fid):
    cases = [
        {}, {"tasks": {fid: [PAYLOAD]}}, {"tasks": "x"},
        {"tasks": [[fid, quiet]]}, {"tasks": [[fid, quiet, 7]]}, {"tasks": [fid, quiet, PAYLOAD]},
        {"tasks": [[fid, quiet, PAYLOAD], [fid, quiet, None]]},
        {"tasks": [[fid, quiet, PAYLOAD]], "task_group_id": ["x"]},
    ]
    with nothing_queued(redis_client, quiet):
        for body in cases:
            assert_error(api.post("/v2/submit", json=body), 400, "BAD_REQUEST")


def test_register_wrong_types_are_400(api, redis_client):
    fn_cases = [
        ({"function_name": "f"}, "function_code"),
        ({"function_code": 123}, "function_code"),
        ({"function_code": ["x"]}, "function_code"),
        ({"function_code": "   "}, "empty"),
        ({"function_code": "x", "public": "yes"}, "public"),
        ({"function_code": "x", "description": 5}, "description"),
        ({"function_code": "x", "function_name": {"n": 1}}, "function_name"),
        ({"function_code": "x", "meta": [1]}, "meta"),
    ]
    n_fn = _count(redis_client, "fx:fn:*")
    for path in ("/v3/functions", "/v2/functions"):
        for body, word in fn_cases:
            err = assert_error(api.post(path, json=body), 400, "BAD_REQUEST")
            assert word in err["message"], (body, err)
    assert _count(redis_client, "fx:fn:*") == n_fn

    n_ep = redis_client.scard("fx:endpoints")
    for body in ({}, {"endpoint_name": 5}, {"endpoint_name": "x", "public": "true"},
                 {"endpoint_name": "x", "metadata": "m"}, {"endpoint_name": "x",
                                                           "allowed_functions": "f"}):
        assert_error(api.post("/v3/endpoints", json=body), 400, "BAD_REQUEST")
    assert redis_client.scard("fx:endpoints") == n_ep

    for body in ({}, {"task_ids": "x"}, {"task_ids": [1]}, {"task_ids": {"a": 1}}):
        assert_error(api.post("/v2/batch_status", json=body), 400, "BAD_REQUEST")
    assert_error(api.get("/v2/endpoints", params={"role": "admin"}), 400, "BAD_REQUEST")


# --------------------------------------------------------------- payload limit
def test_payload_over_the_limit_is_413(api, redis_client, quiet, quiet2, fid, fid2):
    over = "x" * (LIMIT + 1)
    url = f"/v3/endpoints/{quiet}/submit"
    with nothing_queued(redis_client, quiet, quiet2):
        body = assert_error(api.post(url, json={"tasks": {fid: [over]}}), 413,
                            "TASK_PAYLOAD_TOO_LARGE")
        assert str(LIMIT) in body["message"]
        # valid tasks in the same request are refused with it
        assert_error(api.post(url, json={"tasks": {fid: [PAYLOAD, PAYLOAD], fid2: [PAYLOAD, over]}}),
                     413, "TASK_PAYLOAD_TOO_LARGE")
        # a body past the request limit is refused before it is parsed
        assert_error(api.post(url, json={"tasks": {fid: ["x" * (2 * LIMIT)]}}),
                     413, "TASK_PAYLOAD_TOO_LARGE")
        # v2: a valid task for one endpoint, an oversized one for another
        assert_error(api.post("/v2/submit", json={"tasks": [[fid, quiet, PAYLOAD],
                                                            [fid, quiet2, over]]}),
                     413, "TASK_PAYLOAD_TOO_LARGE")
    n_fn = _count(redis_client, "fx:fn:*")
    assert_error(api.post("/v3/functions", json={"function_code": over}), 413,
                 "TASK_PAYLOAD_TOO_LARGE")
    assert _count(redis_client, "fx:fn:*") == n_fn
    # exactly at the limit is accepted
    before = tasks_queued(redis_client, quiet)
    resp = api.ok("POST", url, json={"tasks": {fid: ["x" * LIMIT]}})
    assert len(resp["tasks"][fid]) == 1
    assert tasks_queued(redis_client, quiet) == before + 1


def test_refused_large_body_leaves_the_connection_usable(api, anon, fxc, quiet, fid):
    """A 4xx answered before the body was read must not break the client's next
    request on the same keep-alive connection."""
    from funcx.errors import FuncxAPIError

    big = {"tasks": {fid: ["x" * (2 * LIMIT)]}}
    assert_error(api.post(f"/v3/endpoints/{quiet}/submit", json=big), 413, "TASK_PAYLOAD_TOO_LARGE")
    assert api.get("/v2/version").status_code == 200
    assert_error(anon.post(f"/v3/endpoints/{quiet}/submit", json={"tasks": {fid: ["x" * 500_000]}}),
                 401, "UNAUTHORIZED")
    assert anon.get("/v2/version").status_code == 200
    # through the SDK: the next call must not report the service unreachable
    with pytest.raises(FuncxAPIError) as info:
        fxc.web_client.post(f"/v3/endpoints/{quiet}/submit", big)
    assert (info.value.http_status, info.value.code) == (413, "TASK_PAYLOAD_TOO_LARGE")
    assert fxc.get_endpoint_status(quiet)["status"] == "offline"


def test_function_not_allowed_is_403(api, redis_client, restricted, fid, fid2):
    url = f"/v3/endpoints/{restricted}/submit"
    with nothing_queued(redis_client, restricted):
        body = assert_error(api.post(url, json={"tasks": {fid: [PAYLOAD]}}), 403,
                            "FUNCTION_NOT_ALLOWED")
        assert fid in body["message"]
        assert_error(api.post(url, json={"tasks": {fid2: [PAYLOAD], fid: [PAYLOAD]}}), 403,
                     "FUNCTION_NOT_ALLOWED")
    allowed = api.ok("GET", f"/v3/endpoints/{restricted}/allowed_functions")
    assert allowed == {"endpoint_id": restricted, "restricted": True, "functions": [fid2]}
    before = tasks_queued(redis_client, restricted)
    assert len(api.ok("POST", url, json={"tasks": {fid2: [PAYLOAD]}})["tasks"][fid2]) == 1
    assert tasks_queued(redis_client, restricted) == before + 1


# ------------------------------------------------------------------- v2 submit
def test_v2_submit_answers_per_task(api, redis_client, quiet, quiet2, fid, fid2, restricted):
    unknown_ep, unknown_fn = _rand(), _rand()
    triples = [
        [fid, quiet, PAYLOAD],          # 0 ok
        [fid, unknown_ep, PAYLOAD],     # 1 unknown endpoint
        [fid2, quiet2, PAYLOAD],        # 2 ok
        [fid, "not-a-uuid", PAYLOAD],   # 3 bad endpoint id
        [unknown_fn, quiet, PAYLOAD],   # 4 unknown function on an endpoint that has valid tasks
        [fid2, quiet, PAYLOAD],         # 5 ok
        [fid, restricted, PAYLOAD],     # 6 not allowed there
    ]
    lens = {e: tasks_queued(redis_client, e) for e in (quiet, quiet2, restricted)}
    n_tasks = _count(redis_client, "fx:task:*")
    tg = _rand()
    resp = api.ok("POST", "/v2/submit", json={"task_group_id": tg, "tasks": triples})
    assert resp["response"] == "batch"
    assert resp["task_group_id"] == tg
    results = resp["results"]
    assert len(results) == len(triples)
    for i in (0, 2, 5):
        assert results[i]["status"] == "Success", results[i]
        assert results[i]["http_status_code"] == 200
        assert str(uuid.UUID(results[i]["task_uuid"])) == results[i]["task_uuid"]
    expected_fail = {1: (404, "ENDPOINT_NOT_FOUND"), 3: (400, "BAD_REQUEST"),
                     4: (404, "FUNCTION_NOT_FOUND"), 6: (403, "FUNCTION_NOT_ALLOWED")}
    for i, (status, code) in expected_fail.items():
        r = results[i]
        assert r["status"] == "Failed", (i, r)
        assert r["http_status_code"] == status, (i, r)
        assert r["code"] == code, (i, r)
        assert isinstance(r["reason"], str) and r["reason"], (i, r)
        assert "task_uuid" not in r
    assert unknown_ep in results[1]["reason"] and unknown_fn in results[4]["reason"]
    # exactly the successful tasks were queued, each where it was sent
    assert tasks_queued(redis_client, quiet) == lens[quiet] + 2
    assert tasks_queued(redis_client, quiet2) == lens[quiet2] + 1
    assert tasks_queued(redis_client, restricted) == lens[restricted]
    assert _count(redis_client, "fx:task:*") == n_tasks + 3
    docs = api.ok("POST", "/v2/batch_status",
                  json={"task_ids": [results[i]["task_uuid"] for i in (0, 2, 5)]})["results"]
    assert all(d["status"] == "waiting-for-ep" and d["task_group_id"] == tg for d in docs.values())
    group = api.ok("GET", f"/v2/taskgroup/{tg}")
    assert sorted(t["id"] for t in group["tasks"]) == sorted(results[i]["task_uuid"] for i in (0, 2, 5))


# ---------------------------------------------------------------------- shapes
def test_register_function_shapes(api):
    code = SER.serialize_function(triple)
    v3 = api.ok("POST", "/v3/functions", json={
        "function_name": "triple", "function_code": code, "description": "three times",
        "meta": {"python_version": "3.x"}})
    assert set(v3) == {"function_uuid"}
    v2 = api.ok("POST", "/v2/functions", json={
        "function_name": "triple", "function_code": code, "entry_point": "triple",
        "description": "1.0 style"})
    assert set(v2) == {"function_uuid"}
    assert v2["function_uuid"] != v3["function_uuid"]
    for fid, desc in ((v3["function_uuid"], "three times"), (v2["function_uuid"], "1.0 style")):
        assert str(uuid.UUID(fid)) == fid
        doc = api.ok("GET", f"/v2/functions/{fid}")
        assert {"function_uuid", "function_name", "function_code", "description",
                "metadata"} <= doc.keys()
        assert doc["function_uuid"] == fid
        assert doc["function_name"] == "triple"
        assert doc["function_code"] == code
        assert doc["description"] == desc
        assert isinstance(doc["metadata"], dict)
    assert api.ok("GET", f"/v2/functions/{v3['function_uuid']}")["metadata"] == {
        "python_version": "3.x"}


def test_v3_submit_shape(api, redis_client, quiet, fid, fid2):
    tg = _rand()
    upper_fid = fid.upper()
    before = tasks_queued(redis_client, quiet)
    resp = api.ok("POST", f"/v3/endpoints/{quiet.upper()}/submit", json={
        "tasks": {upper_fid: [PAYLOAD] * 3, fid2: [PAYLOAD]}, "task_group_id": tg.upper(),
        "create_queue": True, "user_runtime": {"python_version": "3"},
        "resource_specification": {"num_nodes": 1}})
    assert set(resp) == {"request_id", "task_group_id", "endpoint_id", "tasks"}
    assert resp["endpoint_id"] == quiet
    assert resp["task_group_id"] == tg
    assert list(resp["tasks"]) == [upper_fid, fid2]  # keys echoed exactly as sent
    assert [len(v) for v in resp["tasks"].values()] == [3, 1]
    all_ids = resp["tasks"][upper_fid] + resp["tasks"][fid2]
    assert len(set(all_ids)) == 4
    assert tasks_queued(redis_client, quiet) == before + 4
    # task_group_id minted when missing
    resp2 = api.ok("POST", f"/v3/endpoints/{quiet}/submit", json={"tasks": {fid: [PAYLOAD]}})
    assert str(uuid.UUID(resp2["task_group_id"])) == resp2["task_group_id"]
    assert resp2["task_group_id"] != tg


def test_task_document_shapes(api, queued, endpoint, fxc):
    tid, tg = queued
    doc = api.ok("GET", f"/v2/tasks/{tid}")
    assert {"task_id", "status"} <= doc.keys() <= TASK_FIELDS
    assert doc["task_id"] == tid
    assert doc["status"] == "waiting-for-ep"
    assert doc["task_group_id"] == tg
    assert "completion_t" not in doc and "result" not in doc and "exception" not in doc

    # a terminal document, from a real endpoint
    fn = fxc.register_function(triple)
    done_tid = fxc.run(14, endpoint_id=endpoint, function_id=fn)
    fxc.wait([done_tid], timeout=45)
    doc = api.ok("GET", f"/v2/tasks/{done_tid}")
    assert {"task_id", "status", "result", "completion_t"} <= doc.keys() <= TASK_FIELDS
    assert doc["status"] == "success"
    assert isinstance(doc["completion_t"], str) and float(doc["completion_t"]) > 0
    assert doc["result"].startswith("00\n")
    assert SER.deserialize(doc["result"]) == 14


def test_batch_status_shape(api, queued):
    tid, _ = queued
    unknown = _rand()
    resp = api.ok("POST", "/v2/batch_status", json={"task_ids": [tid, unknown]})
    assert set(resp) == {"response", "results"}
    assert resp["response"] == "batch"
    assert set(resp["results"]) == {tid, unknown}
    assert resp["results"][tid] == api.ok("GET", f"/v2/tasks/{tid}")
    assert resp["results"][unknown]["task_id"] == unknown
    assert resp["results"][unknown]["status"] == "unknown"
    assert api.ok("POST", "/v2/batch_status", json={"task_ids": []}) == {
        "response": "batch", "results": {}}


def test_taskgroup_shape(api, quiet, fid):
    tg = _rand()
    sent = api.ok("POST", f"/v3/endpoints/{quiet}/submit",
                  json={"tasks": {fid: [PAYLOAD] * 3}, "task_group_id": tg.upper()})
    more = api.ok("POST", "/v2/submit",
                  json={"tasks": [[fid, quiet, PAYLOAD]], "task_group_id": tg})
    expected = sent["tasks"][fid] + [more["results"][0]["task_uuid"]]
    group = api.ok("GET", f"/v2/taskgroup/{tg.upper()}")
    assert set(group) == {"taskgroup_id", "tasks"}
    assert group["taskgroup_id"] == tg  # lower-case
    assert [t["id"] for t in group["tasks"]] == expected
    for t in group["tasks"]:
        assert set(t) == {"id", "created_at"}
        assert float(t["created_at"]) > 0
