"""Every ``FuncXClient`` call of the funcX docs against the real service and a
real endpoint (no mocks).

Functions sent from this module travel as source code, so each one is
self-contained (imports inside the body, no module globals).
"""
from __future__ import annotations

import threading
import uuid

import pytest
import requests

from funcx import FuncXClient
from funcx.errors import (
    FuncxAPIError,
    MaxRequestsExceeded,
    MaxRequestSizeExceeded,
    TaskExecutionFailed,
    TaskPending,
    ThrottlingException,
    VersionMismatch,
)
from funcx.protocol import keys
from funcx.sdk.batch import Batch
from funcx.sdk.login import ClientCredentialsLoginManager
from funcx.sdk.web_client import WebClient

WAIT_S = 60


# ------------------------------------------------------------- remote functions
def describe(a, b, *rest, scale=1, **extra):
    return {"a": a, "b": b, "rest": list(rest), "scale": scale, "extra": extra,
            "total": (a + b + sum(rest)) * scale}


def square(x):
    return x * x


def fail_with(message):
    raise ValueError(message)


def platform_name():
    import platform

    return platform.python_implementation()


# -------------------------------------------------------------------- helpers
def _tag() -> str:
    return uuid.uuid4().hex[:12]


def _client(**kw) -> FuncXClient:
    """A fresh client (empty result cache) with throttling off."""
    c = FuncXClient(**kw)
    c.throttling_enabled = False
    return c


def _task_keys(redis_client) -> set[str]:
    return set(redis_client.scan_iter(match=keys.task("*"), count=1000))


@pytest.fixture(scope="module")
def fns(fxc) -> dict[str, str]:
    """Function ids registered once for the module."""
    return {
        "describe": fxc.register_function(describe),
        "square": fxc.register_function(square),
        "fail_with": fxc.register_function(fail_with),
        "platform_name": fxc.register_function(platform_name),
    }


@pytest.fixture(scope="module")
def me(fxc) -> str:
    return fxc.whoami()["user_id"]


@pytest.fixture(scope="module")
def other(service, redis_client) -> FuncXClient:
    """A client acting as a second user, "other"."""
    from backend.store import users

    uid = users.create_user(redis_client, "other")
    c = _client(access_token=users.issue_token(redis_client, uid))
    assert c.whoami()["user_id"] == uid
    return c


@pytest.fixture(scope="module")
def offline_ep(fxc):
    """A registered endpoint that no agent serves."""
    eid = fxc.register_endpoint("offline-ep")["endpoint_id"]
    yield eid
    fxc.delete_endpoint(eid)


@pytest.fixture
def scratch_endpoints(fxc, other):
    """Endpoints a test registers (as (client, id)); deleted afterwards."""
    made: list[tuple[FuncXClient, str]] = []
    yield made
    for c, eid in made:
        try:
            c.delete_endpoint(eid)
        except FuncxAPIError:
            pass


# ------------------------------------------------------------------ functions
def test_register_function_and_get_function(fxc):
    name = f"fn-{_tag()}"
    fid = fxc.register_function(square, function_name=name, description="squares a number",
                                public=True, searchable=False)
    doc = fxc.get_function(fid)
    assert doc["function_uuid"] == fid
    assert doc["function_name"] == name
    assert doc["description"] == "squares a number"
    assert doc["public"] is True
    assert doc["searchable"] is False
    assert doc["function_code"]

    fid2 = fxc.register_function(square)
    doc2 = fxc.get_function(fid2)
    assert doc2["function_name"] == "square"
    assert doc2["public"] is False
    assert doc2["searchable"] is True


# ------------------------------------------------------------------------ run
def test_run_with_args_and_kwargs(fxc, endpoint, fns):
    tid = fxc.run(1, 2, 3, endpoint_id=endpoint, function_id=fns["describe"], scale=10, colour="red")
    fxc.wait([tid], timeout=WAIT_S)
    assert fxc.get_result(tid) == {"a": 1, "b": 2, "rest": [3], "scale": 10,
                                   "extra": {"colour": "red"}, "total": 60}


def test_map_run(fxc, endpoint, fns):
    ids = fxc.map_run(range(6), endpoint_id=endpoint, function_id=fns["square"])
    assert len(ids) == len(set(ids)) == 6
    done = fxc.wait(ids, timeout=WAIT_S)
    assert [done[t]["result"] for t in ids] == [0, 1, 4, 9, 16, 25]


def test_batch_both_add_spellings_ids_in_order(fxc, endpoint, fns):
    batch = fxc.create_batch()
    assert isinstance(batch, Batch)
    batch.add(1, 2, endpoint_id=endpoint, function_id=fns["describe"], scale=3)
    batch.add(fns["square"], endpoint, args=(7,))
    batch.add(fns["describe"], endpoint, args=(4, 5, 6), kwargs={"scale": 2, "k": "v"})
    batch.add(9, endpoint_id=endpoint, function_id=fns["square"])
    assert len(batch) == 4
    ids = fxc.batch_run(batch)
    assert len(ids) == len(set(ids)) == 4
    done = fxc.wait(ids, timeout=WAIT_S)
    results = [done[t]["result"] for t in ids]
    assert results[0]["total"] == 9 and results[0]["scale"] == 3 and results[0]["extra"] == {}
    assert results[1] == 49
    assert results[2]["total"] == 30 and results[2]["rest"] == [6]
    assert results[2]["extra"] == {"k": "v"}
    assert results[3] == 81


def test_batch_add_rejects_half_given_ids(fxc, fns):
    batch = fxc.create_batch()
    with pytest.raises(TypeError):
        batch.add(1, function_id=fns["square"])
    with pytest.raises(TypeError):
        batch.add(fns["square"], "ep", args=(1,), scale=2)
    assert len(batch) == 0


# -------------------------------------------------------------------- results
def test_get_task_status_result(fxc, endpoint, fns):
    ok = fxc.run(5, endpoint_id=endpoint, function_id=fns["square"])
    bad = fxc.run("boom-123", endpoint_id=endpoint, function_id=fns["fail_with"])
    fxc.wait([ok, bad], timeout=WAIT_S)

    task = fxc.get_task(ok)
    assert task["pending"] is False
    assert task["status"] == "success"
    assert task["result"] == 25
    assert float(task["completion_t"]) > 0
    assert fxc.get_task_status(ok) == "success"
    assert fxc.get_result(ok) == 25

    failed = fxc.get_task(bad)
    assert failed["pending"] is False and failed["status"] == "failed"
    assert "result" not in failed and "exception" in failed
    assert fxc.get_task_status(bad) == "failed"
    with pytest.raises((ValueError, TaskExecutionFailed)) as ei:
        fxc.get_result(bad)
    assert "boom-123" in str(ei.value) or "boom-123" in getattr(ei.value, "remote_data", "")


def test_get_batch_result_and_status(service, token, endpoint, fns):
    submitter = _client(access_token=token)
    ok = submitter.map_run([2, 3], endpoint_id=endpoint, function_id=fns["square"])
    bad = submitter.run("bad-batch", endpoint_id=endpoint, function_id=fns["fail_with"])
    ids = [*ok, bad]
    submitter.wait(ids, timeout=WAIT_S)

    # a second client has nothing cached: both calls go to the service
    reader = _client(access_token=token)
    before = reader.web_client.request_count
    res = reader.get_batch_result(ids)
    assert reader.web_client.request_count == before + 1
    assert list(res) == ids
    for tid, val in zip(ok, (4, 9)):
        assert res[tid]["pending"] is False
        assert res[tid]["status"] == "success"
        assert res[tid]["result"] == val
        assert float(res[tid]["completion_t"]) > 0
    assert res[bad]["pending"] is False and res[bad]["status"] == "failed"
    assert "exception" in res[bad] and float(res[bad]["completion_t"]) > 0

    status = _client(access_token=token).get_batch_status(ids)
    assert set(status) == set(ids)
    assert {t: s["status"] for t, s in status.items()} == {ok[0]: "success", ok[1]: "success",
                                                          bad: "failed"}


def test_terminal_results_are_cached_for_the_session(service, token, endpoint, fns):
    c = _client(access_token=token)
    tid = c.run(11, endpoint_id=endpoint, function_id=fns["square"])
    c.wait([tid], timeout=WAIT_S)  # fetches the terminal document
    n = c.web_client.request_count
    assert c.get_result(tid) == 121
    assert c.get_task(tid)["status"] == "success"
    assert c.get_task_status(tid) == "success"
    assert c.get_batch_result([tid])[tid]["result"] == 121
    assert c.web_client.request_count == n

    # a client that never fetched it does make a request, once
    fresh = _client(access_token=token)
    n = fresh.web_client.request_count
    assert fresh.get_result(tid) == 121
    assert fresh.web_client.request_count == n + 1
    assert fresh.get_result(tid) == 121
    assert fresh.web_client.request_count == n + 1


def test_pending_results_are_not_cached(fxc, offline_ep, fns):
    tid = fxc.run(1, endpoint_id=offline_ep, function_id=fns["square"])
    n = fxc.web_client.request_count
    fxc.get_task(tid)
    fxc.get_task(tid)
    assert fxc.web_client.request_count == n + 2


def test_session_task_group_id(fxc, http, endpoint, fns):
    tid = fxc.run(3, endpoint_id=endpoint, function_id=fns["square"])
    mapped = fxc.map_run([1], endpoint_id=endpoint, function_id=fns["square"])
    for t in (tid, *mapped):
        doc = http.get(f"{http.base_url}/v2/tasks/{t}").json()
        assert doc["task_group_id"] == fxc.session_task_group_id
    listed = {t["id"] for t in fxc.get_taskgroup_tasks(fxc.session_task_group_id)}
    assert {tid, *mapped} <= listed
    fxc.wait([tid, *mapped], timeout=WAIT_S)

    own = _client(task_group_id=str(uuid.uuid4()))
    assert own.session_task_group_id != fxc.session_task_group_id
    t2 = own.run(2, endpoint_id=endpoint, function_id=fns["square"])
    assert http.get(f"{http.base_url}/v2/tasks/{t2}").json()["task_group_id"] == \
        own.session_task_group_id
    own.wait([t2], timeout=WAIT_S)


# ------------------------------------------------------ pending / endpoint status
def test_task_pending_carries_reason(fxc, offline_ep, fns):
    tid = fxc.run(4, endpoint_id=offline_ep, function_id=fns["square"])
    with pytest.raises(TaskPending) as ei:
        fxc.get_result(tid)
    assert ei.value.reason == "waiting-for-ep"
    assert fxc.get_task_status(tid) == "waiting-for-ep"
    assert fxc.get_task(tid)["pending"] is True
    with pytest.raises(TaskPending):
        fxc.wait([tid], timeout=0.5)


def test_endpoint_status_offline(fxc, offline_ep):
    st = fxc.get_endpoint_status(offline_ep)
    assert st["status"] == "offline"
    assert st["details"]["total_workers"] == 0


def test_endpoint_status_online(fxc, endpoint, fns):
    tid = fxc.run(2, endpoint_id=endpoint, function_id=fns["square"])
    fxc.wait([tid], timeout=WAIT_S)
    pause = threading.Event()
    st: dict = {}
    for _ in range(50):  # heartbeats are periodic: at most ~10 s
        st = fxc.get_endpoint_status(endpoint)
        if st["status"] == "online" and st["details"].get("total_workers") == 2:
            break
        pause.wait(0.2)
    assert st["status"] == "online", st
    details = st["details"]
    assert details["total_workers"] == 2
    assert 0 <= details["idle_workers"] <= 2
    assert details["managers"] == 1
    meta = fxc.get_endpoint_metadata(endpoint)
    assert meta["uuid"] == endpoint and meta["status"] == "online"


# ---------------------------------------------------------------------- search
def test_search_function_own(fxc):
    tag = _tag()
    by_name = fxc.register_function(square, function_name=f"sq_{tag}_alpha")
    by_desc = fxc.register_function(square, function_name="plain_name",
                                    description=f"described by {tag} here")
    third = fxc.register_function(square, function_name=f"sq_{tag}_gamma")
    unrelated = fxc.register_function(square, function_name=f"sq_{_tag()}")

    hits = fxc.search_function(tag)
    assert {h["function_uuid"] for h in hits} == {by_name, by_desc, third}
    assert hits.total == 3
    assert unrelated not in {h["function_uuid"] for h in hits}

    assert [h["function_uuid"] for h in fxc.search_function(f"{tag}_alpha")] == [by_name]
    assert [h["function_uuid"] for h in fxc.search_function(f"by {tag}".upper())] == [by_desc]

    page1 = fxc.search_function(tag, offset=0, limit=2)
    page2 = fxc.search_function(tag, offset=2, limit=2)
    assert len(page1) == 2 and len(page2) == 1
    assert page1.total == page2.total == 3
    assert {h["function_uuid"] for h in page1} | {h["function_uuid"] for h in page2} == \
        {by_name, by_desc, third}
    assert fxc.search_function(tag, offset=3, limit=2) == []

    table = str(hits)
    assert f"sq_{tag}_alpha" in table and f"sq_{tag}_gamma" in table and "plain_name" in table
    assert "function_name" in table and "(3 of 3)" in table


def test_search_function_other_users(fxc, other, me):
    tag = _tag()
    public = other.register_function(square, function_name=f"pub_{tag}", public=True)
    private = other.register_function(square, function_name=f"priv_{tag}", public=False)
    hidden = other.register_function(square, function_name=f"hidden_{tag}", public=True,
                                     searchable=False)

    found = {h["function_uuid"]: h for h in fxc.search_function(tag)}
    assert public in found
    assert found[public]["owner"] != me and found[public]["public"] is True
    assert private not in found
    assert hidden not in found
    # searchable=False: in no one's search results, its owner's included (funcX docs)
    assert {h["function_uuid"] for h in other.search_function(tag)} == {public, private}
    # a public function is also readable; a private one is not
    assert fxc.get_function(public)["function_name"] == f"pub_{tag}"
    with pytest.raises(FuncxAPIError) as ei:
        fxc.get_function(private)
    assert ei.value.http_status == 404


def test_search_endpoint_scopes(fxc, other, me, scratch_endpoints):
    tag = _tag()
    mine = fxc.register_endpoint(f"mine-{tag}")["endpoint_id"]
    shared = other.register_endpoint(f"shared-{tag}", public=True)["endpoint_id"]
    private = other.register_endpoint(f"private-{tag}")["endpoint_id"]
    scratch_endpoints += [(fxc, mine), (other, shared), (other, private)]

    def ids(res):
        return {e["uuid"] for e in res}

    assert ids(fxc.search_endpoint(tag, scope="my-endpoints")) == {mine}
    assert ids(fxc.search_endpoint(tag, scope="shared-with-me")) == {shared}
    assert ids(fxc.search_endpoint(tag, scope="all")) == {mine, shared}
    assert ids(other.search_endpoint(tag, scope="my-endpoints")) == {shared, private}
    assert ids(other.search_endpoint(tag, scope="shared-with-me")) == set()
    assert ids(fxc.search_endpoint(f"shared-{tag}", scope="all")) == {shared}
    assert ids(fxc.search_endpoint(tag, scope="all", owner_id=me)) == {mine}
    assert f"mine-{tag}" in str(fxc.search_endpoint(tag, scope="all"))
    with pytest.raises(ValueError):
        fxc.search_endpoint(tag, scope="everything")


# ------------------------------------------------------------------- whitelist
def test_whitelist(fxc, fns, scratch_endpoints):
    eid = fxc.register_endpoint(f"wl-{_tag()}")["endpoint_id"]
    scratch_endpoints.append((fxc, eid))
    allowed, other_fn = fns["square"], fns["describe"]

    assert fxc.get_whitelist(eid) == []
    assert fxc.add_to_whitelist(eid, [allowed]) == [allowed]
    assert fxc.get_whitelist(eid) == [allowed]

    assert fxc.run(2, endpoint_id=eid, function_id=allowed)
    with pytest.raises(FuncxAPIError) as ei:
        fxc.run(1, 2, endpoint_id=eid, function_id=other_fn)
    assert ei.value.http_status == 403
    assert ei.value.code == "FUNCTION_NOT_ALLOWED"
    assert other_fn in ei.value.message

    assert sorted(fxc.add_to_whitelist(eid, other_fn)) == sorted([allowed, other_fn])
    assert fxc.run(1, 2, endpoint_id=eid, function_id=other_fn)
    assert fxc.delete_from_whitelist(eid, [other_fn]) == [allowed]
    with pytest.raises(FuncxAPIError) as ei:
        fxc.run(1, 2, endpoint_id=eid, function_id=other_fn)
    assert ei.value.http_status == 403
    assert fxc.delete_from_whitelist(eid, allowed) == []
    assert fxc.get_whitelist(eid) == []
    assert fxc.run(1, 2, endpoint_id=eid, function_id=other_fn)  # unrestricted again


# ------------------------------------------------------------------ containers
def test_containers(fxc):
    name = f"img-{_tag()}"
    cid = fxc.register_container("docker.io/library/python:3.11", "docker", name=name,
                                 description="a python image")
    uuid.UUID(cid)
    c = fxc.get_container(cid, "docker")
    assert c["container_id"] == cid
    assert c["name"] == name
    assert c["type"] == "docker"
    assert c["location"] == "docker.io/library/python:3.11"
    assert c["description"] == "a python image"
    assert cid in {x["container_id"] for x in fxc.get_containers()}
    with pytest.raises(FuncxAPIError) as ei:
        fxc.get_container(cid, "singularity")
    assert ei.value.http_status == 404

    fid = fxc.register_function(square, container_uuid=cid)
    assert fxc.get_function(fid)["container_uuid"] == cid


def test_register_function_with_unknown_container(fxc):
    with pytest.raises(FuncxAPIError) as ei:
        fxc.register_function(square, container_uuid=str(uuid.uuid4()))
    assert ei.value.http_status == 404
    assert ei.value.code == "CONTAINER_NOT_FOUND"


# ------------------------------------------------------------------ throttling
def test_throttling_max_requests(service):
    c = FuncXClient()
    assert c.throttling_enabled is True
    # the version check of the constructor counts too: 20 in all are fine
    while c.web_client.request_count < 20:
        c.whoami()
    assert c.web_client.request_count == 20
    with pytest.raises(MaxRequestsExceeded) as ei:
        c.whoami()
    assert isinstance(ei.value, ThrottlingException)
    assert c.web_client.request_count == 20  # refused before sending
    c.throttling_enabled = False
    assert c.whoami()["user_id"]
    assert c.web_client.request_count == 21


def test_throttling_max_request_size(service, endpoint, fns, redis_client):
    c = FuncXClient()
    before_keys = _task_keys(redis_client)
    n = c.web_client.request_count
    with pytest.raises(MaxRequestSizeExceeded) as ei:
        c.run("x" * (6 * 1024 * 1024), endpoint_id=endpoint, function_id=fns["square"])
    assert isinstance(ei.value, ThrottlingException)
    assert c.web_client.request_count == n
    assert _task_keys(redis_client) - before_keys == set()


# ---------------------------------------------------------- login and identity
def test_client_credentials_from_environment(service, fxc, me, other, redis_client,
                                             monkeypatch):
    from backend.store import users

    cid, secret = users.create_client(redis_client, me)
    monkeypatch.setenv("FUNCX_SDK_CLIENT_ID", cid)
    monkeypatch.setenv("FUNCX_SDK_CLIENT_SECRET", secret)
    c = FuncXClient()
    assert isinstance(c.login_manager, ClientCredentialsLoginManager)
    assert c.whoami()["user_id"] == me

    # they win over the stored token: credentials of "other" act as "other"
    other_id = other.whoami()["user_id"]
    assert other_id != me
    cid2, secret2 = users.create_client(redis_client, other_id)
    monkeypatch.setenv("FUNCX_SDK_CLIENT_ID", cid2)
    monkeypatch.setenv("FUNCX_SDK_CLIENT_SECRET", secret2)
    assert FuncXClient().whoami()["user_id"] == other_id

    monkeypatch.setenv("FUNCX_SDK_CLIENT_ID", cid)
    monkeypatch.setenv("FUNCX_SDK_CLIENT_SECRET", secret + "-wrong")
    with pytest.raises(FuncxAPIError) as ei:
        FuncXClient().whoami()
    assert ei.value.http_status == 401


def test_logout_revokes_token(service, fxc, me, redis_client):
    from backend.store import users

    tok = users.issue_token(redis_client, me)
    c = FuncXClient(access_token=tok)
    assert c.whoami()["user_id"] == me
    c.logout()
    resp = requests.get(f"{service}/v2/whoami", headers={"Authorization": f"Bearer {tok}"},
                        timeout=30)
    assert resp.status_code == 401
    assert resp.json()["code"] == "UNAUTHORIZED"
    with pytest.raises(FuncxAPIError) as ei:
        FuncXClient(access_token=tok).whoami()
    assert ei.value.http_status == 401
    assert fxc.whoami()["user_id"] == me  # the stored token is untouched


class StaticTokenFuncxLoginManager:
    """A funcX-1.0-style login manager: it hands out the web client itself."""

    def __init__(self, token: str):
        self.token = token
        self.base_urls: list[str | None] = []
        self.logged_out = False

    def get_funcx_web_client(self, *, base_url=None, app_name=None) -> WebClient:
        self.base_urls.append(base_url)
        return WebClient(base_url, self.token)

    def ensure_logged_in(self) -> None:
        return None

    def logout(self) -> bool:
        self.logged_out = True
        return True


def test_custom_login_manager(service, token, fxc, endpoint):
    lm = StaticTokenFuncxLoginManager(token)
    c = FuncXClient(login_manager=lm)
    c.throttling_enabled = False
    assert lm.base_urls == [fxc.funcx_service_address]
    assert c.web_client.token == token
    fid = c.register_function(platform_name)
    tid = c.run(endpoint_id=endpoint, function_id=fid)
    done = c.wait([tid], timeout=WAIT_S)
    assert done[tid]["result"] == "CPython"

    # the 1.0 spelling of the address, ending in /v2
    c2 = FuncXClient(f"{fxc.funcx_service_address}/v2", login_manager=lm)
    assert lm.base_urls[-1] == fxc.funcx_service_address
    assert c2.get_function(fid)["function_uuid"] == fid


# --------------------------------------------------------------------- version
@pytest.fixture
def local_server(service):
    """A real in-process service on a loopback port, on the session's Redis."""
    from live import Server, service_redis_url

    from backend.app import create_app

    server = Server(create_app(service_redis_url()))
    yield server.url
    server.close()


def test_version_mismatch(local_server, monkeypatch):
    from funcx.version import MIN_SDK_VERSION

    monkeypatch.setenv("FUNCX_MIN_SDK_VERSION", "99.0.0")
    with pytest.raises(VersionMismatch) as ei:
        FuncXClient(funcx_service_address=local_server)
    assert ei.value.min_version == "99.0.0"
    assert "99.0.0" in str(ei.value)

    monkeypatch.delenv("FUNCX_MIN_SDK_VERSION")
    monkeypatch.setenv("FUNCX_MIN_EP_VERSION", "5.0.0")
    c = FuncXClient(funcx_service_address=local_server)
    v = c.get_version()
    assert v["min_sdk_version"] == MIN_SDK_VERSION
    assert v["min_ep_version"] == "5.0.0"
    with pytest.raises(VersionMismatch):
        c.version_check(endpoint_version="4.9.9")
    c.version_check(endpoint_version="5.0.0")
    assert c.whoami()["user_id"]


def test_version_of_the_session_service(fxc):
    from funcx.version import MIN_EP_VERSION, MIN_SDK_VERSION

    v = fxc.get_version()
    assert v["min_sdk_version"] == MIN_SDK_VERSION
    assert v["min_ep_version"] == MIN_EP_VERSION
    fxc.version_check()


# ---------------------------------------------------------------------- errors
def test_http_errors_carry_status_code_message(fxc, fns):
    missing = str(uuid.uuid4())
    with pytest.raises(FuncxAPIError) as ei:
        fxc.get_task(missing)
    assert ei.value.http_status == 404
    assert ei.value.code == "TASK_NOT_FOUND"
    assert missing in ei.value.message

    with pytest.raises(FuncxAPIError) as ei:
        fxc.get_batch_status([missing])
    assert ei.value.http_status == 404 and ei.value.code == "TASK_NOT_FOUND"

    with pytest.raises(FuncxAPIError) as ei:
        fxc.get_function(missing)
    assert ei.value.http_status == 404 and ei.value.code == "FUNCTION_NOT_FOUND"

    with pytest.raises(FuncxAPIError) as ei:
        fxc.run(1, endpoint_id=missing, function_id=fns["square"])
    assert ei.value.http_status == 404 and ei.value.code == "ENDPOINT_NOT_FOUND"

    with pytest.raises(FuncxAPIError) as ei:
        fxc.get_task("not-a-uuid")
    assert ei.value.http_status == 400 and ei.value.code == "BAD_REQUEST"
    assert "not-a-uuid" in ei.value.message
