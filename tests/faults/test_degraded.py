"""Degraded service: with its Redis gone (killed and kept down) or frozen
(SIGSTOP), the service answers at once, never hangs: reads get 503 with
Retry-After, a submit is refused (503) and queues nothing; once Redis is
back the service recovers by itself.

Each test runs its own service (no endpoint process is needed: the
endpoint is only registered, so its task stream can be inspected).
"""
from __future__ import annotations

import os
import signal
import time
import uuid

import psutil
import pytest
import requests
from faultlib import noop, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]
ANSWER_WITHIN_S = 10.0  # the web's Redis socket timeout is 5 s (FUNCX_REDIS_SOCKET_TIMEOUT_S)


def _get_routes(fid: str, eid: str, tg: str) -> list[str]:
    return [f"/v2/tasks/{uuid.uuid4()}", f"/v2/functions/{fid}", f"/v2/endpoints/{eid}",
            f"/v2/endpoints/{eid}/status", f"/v2/taskgroup/{tg}", "/v2/whoami", "/v2/endpoints"]


def _submit(http, url, eid, fid, tg):
    from funcx.serialize import FuncXSerializer

    payload = FuncXSerializer().serialize_payload((1,), {})
    return http.post(f"{url}/v3/endpoints/{eid}/submit", timeout=60,
                     json={"tasks": {fid: [payload] * 5}, "task_group_id": tg})


def _dead(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _check_degraded(fab, http, eid, fid, tg, routes: int | None = None):
    for path in _get_routes(fid, eid, tg)[:routes]:
        t0 = time.monotonic()
        resp = http.get(f"{fab.url}{path}", timeout=60)
        took = time.monotonic() - t0
        assert resp.status_code == 503, (path, resp.status_code, resp.text)
        assert resp.json()["code"] == "SERVICE_UNAVAILABLE"
        assert int(resp.headers["Retry-After"]) > 0
        assert took < ANSWER_WITHIN_S, f"GET {path} took {took:.1f}s"
    refused_tg = str(uuid.uuid4())
    t0 = time.monotonic()
    resp = _submit(http, fab.url, eid, fid, refused_tg)
    assert resp.status_code == 503, resp.text
    assert resp.headers.get("Retry-After")
    assert time.monotonic() - t0 < ANSWER_WITHIN_S
    return refused_tg


def _check_recovered(fab, http, eid, fid, tg, refused_tg, before):
    r = fab.redis()
    assert wait_until(lambda: _pings(fab), timeout=30), "redis did not come back"
    # nothing of the refused submit was queued
    assert r.xlen(f"fx:ep:{eid}:tasks") == before["stream"]
    assert (r.get(f"fx:ep:{eid}:outstanding") or "0") == before["outstanding"]
    assert not r.exists(f"fx:tg:{refused_tg}")
    # and the service works again, by itself
    assert wait_until(lambda: http.get(f"{fab.url}/v2/whoami", timeout=30).ok, timeout=30)
    for path in _get_routes(fid, eid, tg):
        resp = http.get(f"{fab.url}{path}", timeout=30)
        assert resp.status_code in (200, 404), (path, resp.status_code, resp.text)
    resp = _submit(http, fab.url, eid, fid, tg)
    assert resp.status_code == 200, resp.text
    assert r.xlen(f"fx:ep:{eid}:tasks") == before["stream"] + 1


def _pings(fab) -> bool:
    try:
        return fab.redis().ping()
    except Exception:  # noqa: BLE001 - not yet
        return False


def _setup(make_fabric):
    fab = make_fabric(env={"FUNCX_REDIS_APPENDFSYNC": "always"}, endpoint=False)
    fxc = fab.client()
    fid = fxc.register_function(noop)
    eid = fxc.register_endpoint("degraded")["endpoint_id"]
    tg = str(uuid.uuid4())
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {fab.token}"
    assert _submit(http, fab.url, eid, fid, tg).status_code == 200
    r = fab.redis()
    before = {"stream": r.xlen(f"fx:ep:{eid}:tasks"),
              "outstanding": r.get(f"fx:ep:{eid}:outstanding") or "0"}
    return fab, http, eid, fid, tg, before


def test_redis_down_reads_503_submit_refused_then_recovers(make_fabric):
    fab, http, eid, fid, tg, before = _setup(make_fabric)
    sup, redis_proc = fab.supervisor(), fab.redis_server()
    sup.suspend()  # so it does not restart redis-server at once
    try:
        redis_proc.kill()
        assert wait_until(lambda: _dead(redis_proc), timeout=10)
        refused_tg = _check_degraded(fab, http, eid, fid, tg)
    finally:
        sup.resume()  # it notices redis-server is gone and restarts it (AOF)
    _check_recovered(fab, http, eid, fid, tg, refused_tg, before)


@pytest.mark.slow  # each answer waits out the web's Redis socket timeout (5 s)
def test_redis_frozen_answers_503_not_hang(make_fabric):
    fab, http, eid, fid, tg, before = _setup(make_fabric)
    redis_proc = fab.redis_server()
    os.kill(redis_proc.pid, signal.SIGSTOP)
    try:
        refused_tg = _check_degraded(fab, http, eid, fid, tg, routes=2)
    finally:
        os.kill(redis_proc.pid, signal.SIGCONT)
    _check_recovered(fab, http, eid, fid, tg, refused_tg, before)
