"""One tenant cannot starve the others (DESIGN decision 8).

* Quotas: a user whose queued tasks or queued payload bytes would pass their
  quota is refused whole (429, nothing queued) while another user's submit and
  result complete; tasks leave the count when cancelled.
* Long-polls: 40 concurrent result long-polls by one user cannot hold the
  request threads: past the per-identity cap they are refused (429 with
  Retry-After), and another user's ``whoami`` and a small run complete while
  the first user's polls are still open.
* Submits: past its task budget (RATE_LIMIT_TASKS, each submit costing its
  task count) one identity is refused whole (429 RATE_LIMITED with
  Retry-After, nothing queued) while another's submit and result complete;
  its concurrent submits per web process are capped.
"""
from __future__ import annotations

import threading

import pytest
import requests
from tenants import PAYLOAD, SER, Tenant, double, error, new_user, own_endpoint_and_function

from backend.store import longpolls, quotas


def run_and_collect(b: Tenant, endpoint: str, fid: str) -> int:
    """B's small run, start to result, through the same server."""
    sub = b.ok("POST", f"/v3/endpoints/{endpoint}/submit", json={"tasks": {fid: [PAYLOAD]}})
    tid, tg = sub["tasks"][fid][0], sub["task_group_id"]
    after = "0"
    for _ in range(10):
        got = b.ok("GET", f"/v2/taskgroup/{tg}/events", params={"after": after, "timeout": 20})
        after = got["last_id"]
        if got["tasks"]:
            (doc,) = got["tasks"]
            assert doc["task_id"] == tid and doc["status"] == "success", doc
            return SER.deserialize(doc["result"])
    raise AssertionError("B's task did not finish")


@pytest.fixture
def small_quotas(monkeypatch, service):
    """A second real web server on the session's Redis, with small quotas."""
    from live import Server, service_redis_url

    from backend.app import create_app

    monkeypatch.setenv("FUNCX_QUOTA_QUEUED_TASKS", "30")
    monkeypatch.setenv("FUNCX_QUOTA_STORED_BYTES", str(40 * len(PAYLOAD)))
    srv = Server(create_app(service_redis_url()))
    yield srv.url
    srv.close()


# --------------------------------------------------------------------- quotas
def test_queued_task_quota_refuses_whole_while_others_run(
        small_quotas, redis_client, token, fxc, endpoint):
    a = new_user(small_quotas, redis_client, "hog")
    b = Tenant(small_quotas, token, uid=fxc.whoami()["user_id"])
    b_fid = fxc.register_function(double)
    eid, fid = own_endpoint_and_function(a)
    first = a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 20}})
    assert quotas.usage(redis_client, a.uid) == (20, 20 * len(PAYLOAD))
    stream = redis_client.xlen(f"fx:ep:{eid}:tasks")
    body = error(a.call("POST", f"/v3/endpoints/{eid}/submit",
                        json={"tasks": {fid: [PAYLOAD] * 11}}), 429, "QUOTA_QUEUED_TASKS")
    assert "30" in body["message"] and "wait" in body["message"], body
    v2 = a.call("POST", "/v2/submit", json={"tasks": [[fid, eid, PAYLOAD]] * 11})
    error(v2, 429, "QUOTA_QUEUED_TASKS")
    assert v2.headers.get("Retry-After")
    # refused whole: nothing queued, nothing counted
    assert redis_client.xlen(f"fx:ep:{eid}:tasks") == stream
    assert quotas.usage(redis_client, a.uid) == (20, 20 * len(PAYLOAD))
    # B is not A: B's submit and result complete while A is at its quota
    assert run_and_collect(b, endpoint, b_fid) == 42
    # up to the quota exactly is taken; a cancelled task leaves the count
    a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 10}})
    assert quotas.usage(redis_client, a.uid)[0] == 30
    error(a.call("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD]}}),
          429, "QUOTA_QUEUED_TASKS")
    for tid in first["tasks"][fid][:5]:
        assert a.ok("POST", f"/v2/tasks/{tid}/cancel")["cancelled"] is True
    assert quotas.usage(redis_client, a.uid) == (25, 25 * len(PAYLOAD))
    a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 5}})


def test_stored_bytes_quota_refuses_whole_while_others_run(
        small_quotas, redis_client, token, fxc, endpoint):
    a = new_user(small_quotas, redis_client, "bytes")
    b = Tenant(small_quotas, token, uid=fxc.whoami()["user_id"])
    b_fid = fxc.register_function(double)
    eid, fid = own_endpoint_and_function(a)
    big = SER.pack_buffers([SER.serialize(("x" * (10 * len(PAYLOAD)),)), SER.serialize({})])
    a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [big, big]}})
    before = quotas.usage(redis_client, a.uid)
    assert before == (2, 2 * len(big))
    body = error(a.call("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [big]}}),
                 429, "QUOTA_STORED_BYTES")
    assert "bytes" in body["message"] and "by reference" in body["message"], body
    assert quotas.usage(redis_client, a.uid) == before
    assert redis_client.xlen(f"fx:ep:{eid}:tasks") == 1
    assert run_and_collect(b, endpoint, b_fid) == 42
    # small ones still fit under the bytes left
    a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 5}})


# ----------------------------------------------------------------- long-polls
def test_forty_long_polls_cannot_starve_another_user(service, redis_client, token, fxc, endpoint):
    """A holds 40 concurrent 30 s long-polls on the real (gunicorn) service; B's
    whoami and a small run finish while those A was allowed are still open."""
    a = new_user(service, redis_client, "poller")
    eid, fid = own_endpoint_and_function(a)
    tg = a.ok("POST", f"/v3/endpoints/{eid}/submit",
              json={"tasks": {fid: [PAYLOAD]}})["task_group_id"]
    answers: list[requests.Response] = []
    lock = threading.Lock()
    all_answered = threading.Event()
    n = 40

    def poll():
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {a.token}"
        resp = s.get(f"{service}/v2/taskgroup/{tg}/events",
                     params={"after": "0", "timeout": 30}, timeout=90)
        with lock:
            answers.append(resp)
            if len(answers) == n:
                all_answered.set()

    threads = [threading.Thread(target=poll, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    # wait until every poll is either answered or holding a slot (a Redis-side event)
    cap = longpolls.open_polls
    for _ in range(3000):
        with lock:
            done = len(answers)
        if done + cap(redis_client, a.uid) == n:
            break
        all_answered.wait(0.01)
    with lock:
        refused = list(answers)
    held = cap(redis_client, a.uid)
    assert held + len(refused) == n
    assert 0 < held <= 16, held
    for resp in refused:
        error(resp, 429, "LONGPOLL_LIMIT")
        assert int(resp.headers["Retry-After"]) >= 1
    # B, meanwhile: whoami and a small run, start to result
    b = Tenant(service, token)
    assert b.ok("GET", "/v2/whoami", timeout=60)["user_id"]
    b_fid = fxc.register_function(double)
    tid = fxc.run(21, endpoint_id=endpoint, function_id=b_fid)
    assert fxc.wait([tid], timeout=60)[tid]["status"] == "success"
    assert fxc.get_result(tid) == 42
    # ... all while A's admitted polls are still open
    with lock:
        assert len(answers) == len(refused), "an admitted long-poll of A ended before B finished"
    assert cap(redis_client, a.uid) == held
    assert all_answered.wait(60)
    for resp in answers[len(refused):]:
        assert resp.status_code in (200, 429), resp.text
    assert cap(redis_client, a.uid) == 0  # slots are given back


def test_finished_and_failed_tasks_leave_the_quota(service, redis_client, token, fxc, endpoint):
    """A task's quota is released when its result is applied, success or
    failure: a user who ran many tasks is not refused for them later."""
    from backend.store import quotas

    # failures: a new user's tasks fail when their endpoint is deleted with them queued
    b = new_user(service, redis_client, "runner")
    eid, fid = own_endpoint_and_function(b)
    sub = b.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 5}})
    assert quotas.usage(redis_client, b.uid) == (5, 5 * len(PAYLOAD))
    b.ok("DELETE", f"/v2/endpoints/{eid}")
    for tid in sub["tasks"][fid]:
        assert b.ok("GET", f"/v2/tasks/{tid}")["status"] == "failed"
    assert quotas.usage(redis_client, b.uid) == (0, 0)
    # successes: the session user's run on the session endpoint
    me = Tenant(service, token, uid=fxc.whoami()["user_id"])
    my_fid = me.function()
    before = quotas.usage(redis_client, me.uid)
    assert run_and_collect(me, endpoint, my_fid) == 42
    assert quotas.usage(redis_client, me.uid) == before


# ------------------------------------------------------ task budget, submits
@pytest.fixture
def small_task_budget(monkeypatch, service):
    """A second real web server on the session's Redis, with a task budget of 30."""
    from live import Server, service_redis_url

    from backend.app import create_app

    monkeypatch.setenv("FUNCX_RATE_LIMIT_ENABLED", "1")
    monkeypatch.setenv("FUNCX_RATE_LIMIT_TASKS", "30 per minute")
    srv = Server(create_app(service_redis_url()))
    yield srv.url
    srv.close()


def test_task_budget_throttles_one_identity_while_others_run(
        small_task_budget, redis_client, token, fxc, endpoint):
    """A submits tasks past its budget: refused whole (429 RATE_LIMITED with
    Retry-After, nothing queued or counted), before its body is even read once
    the budget is spent; B's submit and result complete meanwhile."""
    a = new_user(small_task_budget, redis_client, "flood")
    b = Tenant(small_task_budget, token, uid=fxc.whoami()["user_id"])
    b_fid = fxc.register_function(double)
    eid, fid = own_endpoint_and_function(a)
    a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 20}})
    stream, usage = redis_client.xlen(f"fx:ep:{eid}:tasks"), quotas.usage(redis_client, a.uid)
    over = a.call("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 11}})
    body = error(over, 429, "RATE_LIMITED")
    assert "30" in body["message"] and "nothing was queued" in body["message"], body
    assert 1 <= int(over.headers["Retry-After"]) <= 120
    v2 = a.call("POST", "/v2/submit", json={"tasks": [[fid, eid, PAYLOAD]] * 11})
    error(v2, 429, "RATE_LIMITED")
    assert int(v2.headers["Retry-After"]) >= 1
    assert redis_client.xlen(f"fx:ep:{eid}:tasks") == stream
    assert quotas.usage(redis_client, a.uid) == usage
    # what fits is taken; then the budget is spent and even a body that would
    # be a 400 is refused 429 (checked before the body is read)
    a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 10}})
    spent = a.call("POST", f"/v3/endpoints/{eid}/submit", data=b"not json",
                   headers={"Content-Type": "application/json"})
    error(spent, 429, "RATE_LIMITED")
    assert int(spent.headers["Retry-After"]) >= 1
    assert quotas.usage(redis_client, a.uid)[0] == usage[0] + 10
    # B is not A: B's submit and result complete while A is throttled
    assert run_and_collect(b, endpoint, b_fid) == 42
    # and A's reads still answer (a task budget, not a ban)
    a.ok("GET", "/v2/whoami")


def test_concurrent_submits_per_identity_are_capped(monkeypatch):
    """Past SUBMIT_CONCURRENCY_PER_IDENTITY submits in progress in one web
    process, another by the same identity is refused (429, Retry-After);
    another identity's is not, and slots are given back."""
    from backend.api_errors import ApiError
    from backend.limits import submit_slot

    monkeypatch.setenv("FUNCX_SUBMIT_CONCURRENCY_PER_IDENTITY", "2")
    with submit_slot("noisy"), submit_slot("noisy"):
        with pytest.raises(ApiError) as refused:
            with submit_slot("noisy"):
                pass
        assert refused.value.status == 429 and refused.value.code == "RATE_LIMITED"
        assert refused.value.headers["Retry-After"] == "1"
        with submit_slot("quiet"):
            pass
    with submit_slot("noisy"), submit_slot("noisy"):
        pass
