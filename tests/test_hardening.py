"""Hardening: the service never unpickles user data, rate limits per identity,
size limits, and no secret in any log, error body or CLI error.

Tasks go to endpoints registered through the API and never started, so they
stay queued and their streams are ours alone.
"""
from __future__ import annotations

import base64
import os
import pickle
import socket
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import requests
from live import Server, service_redis_url

from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
PAYLOAD = SER.serialize_payload((21,), {})
LIMIT = int(os.environ["FUNCX_MAX_PAYLOAD_BYTES"])  # conftest: 1 MiB
ENDPOINT_PASSWORDS: list[str] = []  # from registration answers in this module


def double(x):
    return 2 * x


class Evil:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def evil_item(marker: Path) -> str:
    """A serialized item in the ``00`` (pickle, base64) format that would
    create ``marker`` if anyone unpickled it."""
    return "00\n" + base64.encodebytes(pickle.dumps(Evil(marker))).decode()


class Api:
    def __init__(self, base: str, token: str | None):
        self.base = base
        self.s = requests.Session()
        if token:
            self.s.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return self.s.request(method, self.base + path, timeout=30, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        resp = self.call(method, path, **kw)
        assert resp.status_code == 200, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json()

    def quiet_endpoint(self) -> str:
        """A registered endpoint nobody runs; remembers its Redis password."""
        info = self.ok("POST", "/v3/endpoints",
                       json={"endpoint_name": f"quiet-{uuid.uuid4().hex[:8]}"})
        ENDPOINT_PASSWORDS.append(unquote(urlsplit(info["redis_url"]).password))
        return info["endpoint_id"]


def decode_tasks(fields: dict) -> list:
    """The tasks of one task-stream entry, decoded with the project's own
    protocol code; each payload is also verbatim in the entry's raw fields."""
    try:
        from funcx.protocol.streams import decode_task_entry
    except ImportError:  # one task per entry
        from funcx.protocol.messages import Task

        def decode_task_entry(f):
            return [Task.from_fields(f)]
    tasks = decode_task_entry(fields)
    raw = "".join(fields.values())
    assert all(t.payload in raw for t in tasks)
    return tasks


def _count(r, pattern: str) -> int:
    return sum(1 for _ in r.scan_iter(match=pattern, count=10_000))


@contextmanager
def nothing_queued(r, eid: str):
    def snap():
        return r.xlen(f"fx:ep:{eid}:tasks"), _count(r, "fx:task:*"), _count(r, "fx:tg:*")

    before = snap()
    yield
    assert snap() == before


def new_user(r, prefix: str) -> dict:
    from backend import admin

    return admin.add_user(r, f"{prefix}-{uuid.uuid4().hex[:8]}")


def fx(*args: str, stdin: str | None = None, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args], capture_output=True,
                          text=True, timeout=120, input=stdin, env={**os.environ, **(env or {})})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(service, token):
    a = Api(service, token)
    yield a
    a.s.close()


# ----------------------------------------------------------------- (a) no unpickling
def test_the_service_never_unpickles(api, redis_client, tmp_path):
    markers = {k: tmp_path / f"pwned-{k}" for k in ("code", "arg", "v2arg", "result", "exc")}
    code = evil_item(markers["code"])
    payload = evil_item(markers["arg"])
    payload_v2 = evil_item(markers["v2arg"])
    assert pickle.loads(base64.decodebytes(code[3:].encode())) == 0  # it is live: proven here,
    assert markers["code"].exists()  # on a throw-away marker, by this test process itself
    markers["code"].unlink()

    eid = api.quiet_endpoint()
    fid = api.ok("POST", "/v3/functions", json={"function_name": "evil",
                                                "function_code": code})["function_uuid"]
    fid2 = api.ok("POST", "/v2/functions", json={"function_name": "evil2",
                                                 "function_code": code})["function_uuid"]
    tg = str(uuid.uuid4())
    sub = api.ok("POST", f"/v3/endpoints/{eid}/submit",
                  json={"tasks": {fid: [payload, payload]}, "task_group_id": tg})
    tids = sub["tasks"][fid]
    v2 = api.ok("POST", "/v2/submit", json={"tasks": [[fid2, eid, payload_v2]],
                                            "task_group_id": tg})
    assert v2["results"][0]["status"] == "Success"
    tids.append(v2["results"][0]["task_uuid"])

    # stored byte for byte: the function's code, copied for the endpoint, and the payloads
    assert api.ok("GET", f"/v2/functions/{fid}")["function_code"] == code
    assert redis_client.get(f"fx:ep:{eid}:fn:{fid}") == code
    assert redis_client.get(f"fx:ep:{eid}:fn:{fid2}") == code
    queued = [t for _, f in redis_client.xrange(f"fx:ep:{eid}:tasks") for t in decode_tasks(f)]
    assert [t.task_id for t in queued] == tids
    assert [t.payload for t in queued] == [payload, payload, payload_v2]

    # results pass through the ingester unopened too
    from funcx.protocol.messages import Result

    result_data, exc_data = evil_item(markers["result"]), evil_item(markers["exc"])
    redis_client.xadd(f"fx:ep:{eid}:results", Result(tids[0], "success", data=result_data,
                                                        task_group_id=tg).to_fields())
    redis_client.xadd(f"fx:ep:{eid}:results", Result(tids[1], "failed", data="Traceback: boom",
                                                        exc_data=exc_data,
                                                        task_group_id=tg).to_fields())
    done, after = {}, "0"
    while len(done) < 2:  # completion events, pushed by long-poll (bounded by its timeout)
        ev = api.ok("GET", f"/v2/taskgroup/{tg}/events", params={"after": after, "timeout": 20})
        assert ev["tasks"], "the ingester did not apply the results within 20 s"
        after = ev["last_id"]
        done.update({d["task_id"]: d for d in ev["tasks"]})
    assert done[tids[0]]["status"] == "success" and done[tids[0]]["result"] == result_data
    assert done[tids[1]]["status"] == "failed"
    assert done[tids[1]]["exception_data"] == exc_data
    assert api.ok("GET", f"/v2/tasks/{tids[0]}")["result"] == result_data
    batch = api.ok("POST", "/v2/batch_status", json={"task_ids": tids})["results"]
    assert batch[tids[0]]["result"] == result_data and batch[tids[2]]["status"] == "waiting-for-ep"

    for name, marker in markers.items():
        assert not marker.exists(), f"something in the service unpickled the {name}"


# ----------------------------------------------------------------- (b) rate limits
@pytest.fixture(scope="module")
def limited(service, redis_client):
    """A second real server of our app with tiny limits (same Redis)."""
    from backend.app import create_app

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FUNCX_RATE_LIMIT_ENABLED", "1")
        mp.setenv("FUNCX_RATE_LIMIT_READ", "5 per minute")
        mp.setenv("FUNCX_RATE_LIMIT_WRITE", "3 per minute")
        app = create_app(service_redis_url())
    assert "funcx_limiter" in app.extensions
    srv = Server(app)
    yield srv.url
    srv.close()


def _assert_429(resp: requests.Response) -> None:
    assert resp.status_code == 429, resp.text[:300]
    assert resp.json()["code"] == "RATE_LIMITED" and resp.json()["message"]
    retry = resp.headers.get("Retry-After")
    assert retry is not None and 0 < int(retry) <= 60, retry


def test_rate_limits_per_identity(service, limited, redis_client):
    a_user, b_user = new_user(redis_client, "busy"), new_user(redis_client, "calm")
    a_main = Api(service, a_user["token"])  # set up through the unlimited service
    eid = a_main.quiet_endpoint()
    fid = a_main.ok("POST", "/v3/functions", json={
        "function_name": "double", "function_code": SER.serialize_function(double)})["function_uuid"]
    a, b = Api(limited, a_user["token"]), Api(limited, b_user["token"])

    # reads: 5 per minute, then 429 with Retry-After and a JSON body
    for _ in range(5):
        assert a.call("GET", "/v2/whoami").status_code == 200
    _assert_429(a.call("GET", "/v2/whoami"))
    _assert_429(a.call("GET", "/v2/endpoints"))  # one read budget across routes
    assert b.call("GET", "/v2/whoami").status_code == 200  # another identity: its own budget
    assert a.call("GET", "/v2/version").status_code == 200  # the public version is not limited

    # writes: a separate budget of 3; the refused 4th submit queued nothing
    body = {"tasks": {fid: [PAYLOAD]}}
    for _ in range(3):
        assert a.call("POST", f"/v3/endpoints/{eid}/submit", json=body).status_code == 200
    assert redis_client.xlen(f"fx:ep:{eid}:tasks") == 3
    with nothing_queued(redis_client, eid):
        _assert_429(a.call("POST", f"/v3/endpoints/{eid}/submit", json=body))
        _assert_429(a.call("POST", "/v2/submit", json={"tasks": [[fid, eid, PAYLOAD]]}))
        _assert_429(a.call("POST", "/v2/functions", json={
            "function_name": "f", "function_code": SER.serialize_function(double)}))
    # another identity still writes; the session's own service keeps its own limits
    assert b.call("POST", "/v2/containers",
                  json={"type": "docker", "location": "x"}).status_code == 200
    assert a_main.call("GET", "/v2/whoami").status_code == 200


def test_an_error_after_the_body_was_read_answers_at_once(limited, redis_client):
    """4xx raised after the view parsed the JSON body: answered promptly on a
    keep-alive connection that stays usable (werkzeug's wsgi.input is not bounded)."""
    c = Api(limited, new_user(redis_client, "fast")["token"])
    for _ in range(2):
        resp = c.s.post(limited + "/v3/functions", timeout=5, json={
            "function_name": "f", "function_code": "x", "group": str(uuid.uuid4())})
        assert resp.status_code == 404 and resp.json()["code"] == "GROUP_NOT_FOUND"


# ----------------------------------------------------------------- (c) size limits
def test_payload_over_the_limit_is_413_and_queues_nothing(api, redis_client):
    eid = api.quiet_endpoint()
    fid = api.ok("POST", "/v3/functions", json={
        "function_name": "double", "function_code": SER.serialize_function(double)})["function_uuid"]
    big = "00\n" + "A" * (LIMIT + 1 - 3)
    assert len(big) == LIMIT + 1
    with nothing_queued(redis_client, eid):
        for path, body in ((f"/v3/endpoints/{eid}/submit", {"tasks": {fid: [PAYLOAD, big]}}),
                           ("/v2/submit", {"tasks": [[fid, eid, PAYLOAD], [fid, eid, big]]})):
            resp = api.call("POST", path, json=body)
            assert resp.status_code == 413, resp.text[:200]
            assert resp.json()["code"] == "TASK_PAYLOAD_TOO_LARGE"
        # a body far past the request limit is refused before it is parsed
        huge = api.call("POST", f"/v3/endpoints/{eid}/submit",
                        json={"tasks": {fid: ["00\n" + "A" * (2 * LIMIT)]}})
        assert huge.status_code == 413 and huge.json()["code"] == "TASK_PAYLOAD_TOO_LARGE"
        code = api.call("POST", "/v3/functions", json={"function_name": "big",
                                                       "function_code": big})
        assert code.status_code == 413 and code.json()["code"] == "TASK_PAYLOAD_TOO_LARGE"
    exactly = "00\n" + "A" * (LIMIT - 3)  # the limit itself is allowed
    assert api.call("POST", f"/v3/endpoints/{eid}/submit",
                    json={"tasks": {fid: [exactly]}}).status_code == 200
    assert redis_client.xlen(f"fx:ep:{eid}:tasks") == 1


# ----------------------------------------------------------------- (d) secrets
def test_error_bodies_carry_no_secrets(service, token, api, redis_client):
    redis_pw = urlsplit(service_redis_url()).password
    # 401: a token that is almost right is not echoed
    resp = requests.get(f"{service}/v2/whoami", headers={"Authorization": f"Bearer {token}x"},
                        timeout=30)
    assert resp.status_code == 401 and token not in resp.text
    # 500: a corrupt record (a string where a task hash should be) -> a generic message
    tid = str(uuid.uuid4())
    redis_client.set(f"fx:task:{tid}", "not a task hash")
    try:
        resp = api.call("GET", f"/v2/tasks/{tid}")
    finally:
        redis_client.delete(f"fx:task:{tid}")
    assert resp.status_code == 500 and resp.json()["code"] == "INTERNAL_ERROR"
    assert token not in resp.text and "Traceback" not in resp.text and "WRONGTYPE" not in resp.text
    # 503: the store is unreachable (a server of our app on a dead Redis URL with a password)
    from backend.app import create_app

    dead_pw = "dead-" + uuid.uuid4().hex
    srv = Server(create_app(f"redis://:{dead_pw}@127.0.0.1:{free_port()}/0"))
    try:
        resp = requests.post(f"{srv.url}/v3/functions", timeout=30,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"function_name": "f", "function_code": "x"})
    finally:
        srv.close()
    assert resp.status_code == 503 and resp.json()["code"] == "SERVICE_UNAVAILABLE"
    assert resp.headers.get("Retry-After")
    for secret in (token, dead_pw, redis_pw):
        assert secret not in resp.text


def test_cli_errors_without_debug_show_no_traceback_or_locals(service, token):
    dead = f"http://127.0.0.1:{free_port()}"
    bogus = "fx_" + uuid.uuid4().hex  # a local variable of `login`: locals would show it
    p = fx("--service", dead, "login", stdin=bogus + "\n")
    assert p.returncode == 5 and "cannot reach" in p.stderr
    p2 = fx("task", "status", str(uuid.uuid4()))
    assert p2.returncode == 3 and p2.stderr.startswith("Error:")
    # an unexpected failure (a malformed Redis URL with a password in it) in an admin command
    secret = "pw-" + uuid.uuid4().hex
    p3 = fx("admin", "user", "list", env={"FUNCX_REDIS_URL": f"redis://:{secret}@127.0.0.1:x/0"})
    assert p3.returncode != 0 and p3.stderr.startswith("Error:")
    for proc in (p, p2, p3):
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out and "locals" not in out.lower(), out
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        for s in (bogus, token, secret):
            assert s not in out
    # --debug is the way to see the traceback
    p4 = fx("--debug", "admin", "user", "list",
            env={"FUNCX_REDIS_URL": f"redis://:{secret}@127.0.0.1:x/0"})
    assert p4.returncode != 0 and "Traceback" in p4.stderr


# the stores that hold a secret by design; everything else under FUNCX_HOME is scanned
SECRET_STORES = {Path("credentials/token.json"), Path("service/redis/secret")}


def test_no_secret_in_any_log_or_file(funcx_home, token, api, endpoint, redis_client):
    """Runs last in this module: after the session's activity (every module
    run before it), scan every file under FUNCX_HOME."""
    api.quiet_endpoint()  # at least one endpoint password of our own to look for
    redis_pw = (funcx_home / "service" / "redis" / "secret").read_text().split()[0]
    assert ENDPOINT_PASSWORDS and len(redis_pw) >= 32 and token.startswith("fx_")
    secrets_ = {"session token": token, "redis password": redis_pw,
                **{f"endpoint password {i}": p for i, p in enumerate(ENDPOINT_PASSWORDS)}}
    scanned = []
    for path in sorted(funcx_home.rglob("*")):
        rel = path.relative_to(funcx_home)
        if not path.is_file() or rel in SECRET_STORES or path.suffix == ".sock":
            continue
        data = path.read_bytes()
        scanned.append(rel)
        for what, s in secrets_.items():
            assert s.encode() not in data, f"{what} found in {rel}"
    names = {str(p) for p in scanned}
    assert any(n.startswith("service/logs/") for n in names)
    assert any(n.endswith("endpoint.log") for n in names)
    # the web log is where the 500 above was recorded: the scan covered it
    web = (funcx_home / "service" / "logs" / "web.log").read_text(errors="replace")
    assert "unhandled error" in web
