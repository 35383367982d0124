"""Riding out a briefly unavailable service without losing or doubling work:
the SDK retries only where that is safe, and a submit carrying an
Idempotency-Key is queued once however often it is sent."""
from __future__ import annotations

import json
import socket
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from funcx.errors import ServiceUnreachable


def double(x):
    return 2 * x


# ------------------------------------------------------- idempotent submit
@pytest.fixture(scope="module")
def idle_target(fxc):
    """A function and a registered endpoint that never runs: queued tasks stay put."""
    fid = fxc.register_function(double)
    eid = fxc.register_endpoint(f"idem-{uuid.uuid4().hex[:6]}")["endpoint_id"]
    yield fid, eid
    fxc.delete_endpoint(eid)


def _submit(http, eid, fid, n, key=None):
    from funcx.serialize import FuncXSerializer

    payloads = [FuncXSerializer().serialize_payload((i,), {}) for i in range(n)]
    headers = {"Idempotency-Key": key} if key is not None else {}
    return http.post(f"{http.base_url}/v3/endpoints/{eid}/submit", headers=headers, timeout=30,
                     json={"tasks": {fid: payloads}})


def test_a_repeated_submit_with_the_same_key_is_queued_once(http, idle_target, redis_client):
    fid, eid = idle_target
    stream = f"fx:ep:{eid}:tasks"
    before = redis_client.xlen(stream)
    key = str(uuid.uuid4())
    first = _submit(http, eid, fid, 3, key)
    again = _submit(http, eid, fid, 3, key)
    assert first.status_code == again.status_code == 200
    assert again.json()["tasks"] == first.json()["tasks"]
    assert redis_client.xlen(stream) == before + 1  # one entry: queued once
    other = _submit(http, eid, fid, 3, str(uuid.uuid4()))  # a new key is a new submit
    assert set(other.json()["tasks"][fid]).isdisjoint(first.json()["tasks"][fid])
    assert redis_client.xlen(stream) == before + 2


def test_a_key_reused_for_another_submit_is_refused(http, idle_target):
    fid, eid = idle_target
    key = str(uuid.uuid4())
    assert _submit(http, eid, fid, 2, key).status_code == 200
    resp = _submit(http, eid, fid, 5, key)
    assert resp.status_code == 409 and resp.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    resp = _submit(http, eid, fid, 1, "not a valid key!")
    assert resp.status_code == 400


def test_batch_run_sends_a_key_per_request(fxc, idle_target, redis_client):
    fid, eid = idle_target
    batch = fxc.create_batch()
    for i in range(3):
        batch.add(i, endpoint_id=eid, function_id=fid)
    tids = fxc.batch_run(batch)
    owner = redis_client.hget(f"fx:task:{tids[0]}", "owner")
    stored = [json.loads(redis_client.get(k)) for k in redis_client.scan_iter(
        f"fx:submitted:{owner}:*", count=1000)]
    assert tids in stored


# ------------------------------------------------------------ SDK retries
class _Handler(BaseHTTPRequestHandler):
    """Drops the first ``drop`` requests without answering, then answers JSON."""

    def do_GET(self):
        self._answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self):
        srv = self.server
        srv.seen += 1
        if srv.seen <= srv.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = json.dumps({"ok": srv.seen}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _server(port: int = 0, drop: int = 0) -> ThreadingHTTPServer:
    srv = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    srv.seen, srv.drop = 0, drop
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_refused_connections_are_retried_only_when_asked():
    from funcx.sdk.web_client import WebClient

    port = _free_port()
    web = WebClient(f"http://127.0.0.1:{port}")
    with pytest.raises(ServiceUnreachable):  # the default: fail at once
        web.post("/x", {})
    started: list = []
    timer = threading.Timer(0.7, lambda: started.append(_server(port)))
    timer.start()
    try:
        # nothing was sent while the port was closed: safe to retry even a POST
        assert web.post("/x", {}, retry_s=20) == {"ok": 1}
    finally:
        timer.join()
        for s in started:
            s.shutdown()


def test_a_dropped_request_is_retried_only_if_idempotent():
    from funcx.sdk.web_client import WebClient

    srv = _server(drop=1)
    try:
        web = WebClient(f"http://127.0.0.1:{srv.server_port}")
        with pytest.raises(ServiceUnreachable):  # it may have been done: not repeated
            web.post("/x", {}, retry_s=20)
        assert srv.seen == 1
        srv.seen = 0
        assert web.post("/x", {}, retry_s=20, idempotent=True) == {"ok": 2}
        srv.seen = 0
        assert web.get("/x", retry_s=20) == {"ok": 2}  # a GET is idempotent
    finally:
        srv.shutdown()
