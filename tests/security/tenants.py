"""What the security suite's tests share: a tenant of the service talking plain
REST with its own bearer token (:class:`Tenant`), a new user as one
(:func:`new_user`), the function every test runs (``double``) and a payload
for it, an endpoint and function of a tenant's own, the session user's task
that must complete meanwhile (:func:`session_task`), an error-answer
assertion (:func:`error`) and a deadline-bounded poll (:func:`until`).

A plain module, not a conftest: a test in tests/security/ imports it as
``from tenants import Tenant, new_user, ...`` (pytest puts this folder on
``sys.path`` for the test modules in it, which have no ``__init__.py``).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
import requests

from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
WAIT_S = 60  # what a helper waits for something, unless told otherwise
# one task's payload for ``double``: the packed ((21,), {}) pair
PAYLOAD = SER.pack_buffers([SER.serialize((21,)), SER.serialize({})])


def double(x):
    return 2 * x


class Tenant:
    """A user of the service talking plain REST.

    ``user`` (the name) and ``uid`` (the user id) are known for users made
    with :func:`new_user`; ``timeout`` is what a request waits for at most
    unless the call names its own."""

    def __init__(self, base: str, token: str, *, uid: str = "", user: str = "",
                 timeout: float = 120):
        self.base, self.token, self.uid, self.user = base, token, uid, user
        self.timeout = timeout
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        return self.s.request(method, self.base + path, **kw)

    def ok(self, method: str, path: str, **kw) -> dict:
        resp = self.call(method, path, **kw)
        assert resp.status_code == 200, f"{method} {path}: {resp.status_code} {resp.text[:300]}"
        return resp.json()

    def at(self, base: str) -> Tenant:
        """The same user, talking to another server (on the same Redis)."""
        return Tenant(base, self.token, uid=self.uid, user=self.user, timeout=self.timeout)

    def endpoint(self, **body) -> dict:
        """A registered endpoint nobody runs (no agent: its tasks stay
        queued): its registration answer.  ``body`` adds to (or overrides)
        the registration's fields."""
        return self.ok("POST", "/v3/endpoints",
                       json={"endpoint_name": f"ep-{uuid.uuid4().hex[:8]}", **body})

    def function(self, fn: Callable = double) -> str:
        """Register ``fn`` (its source, under its own name): its function id."""
        return self.ok("POST", "/v3/functions", json={
            "function_name": fn.__name__,
            "function_code": SER.serialize_function(fn)})["function_uuid"]

    def submit(self, eid: str, fid: str, n: int = 1, **body) -> tuple[str, list[str]]:
        """``n`` tasks of ``fid`` (arguments 0 .. n-1) on ``eid``: the task
        group id and the task ids.  ``body`` adds to the submit's fields."""
        req = {"tasks": {fid: [SER.serialize_payload((i,), {}) for i in range(n)]},
               "create_queue": False, "user_runtime": {}, **body}
        ans = self.ok("POST", f"/v3/endpoints/{eid}/submit", json=req)
        return ans["task_group_id"], ans["tasks"][fid]

    def status(self, tid: str) -> str:
        return self.ok("GET", f"/v2/tasks/{tid}")["status"]


def new_user(base: str, redis_client: redis.Redis, prefix: str, **kw) -> Tenant:
    """A new user named ``<prefix>-<random>`` (made with ``funcx admin``'s
    own code), as a tenant of the server at ``base``; ``kw`` goes to
    :class:`Tenant` (e.g. ``timeout``)."""
    from backend import admin

    rec = admin.add_user(redis_client, f"{prefix}-{uuid.uuid4().hex[:8]}")
    return Tenant(base, rec["token"], uid=rec["user_id"], user=rec["user"], **kw)


def own_endpoint_and_function(t: Tenant, **body) -> tuple[str, str]:
    """An endpoint of the tenant's own (no agent: its tasks stay queued) and
    ``double`` registered: their ids.  ``body`` adds to the endpoint's
    registration (e.g. ``limits``)."""
    return t.endpoint(**body)["endpoint_id"], t.function()


def error(resp: requests.Response, status: int, code: str) -> dict:
    """Assert ``resp`` is the error ``status`` with ``code``: its body."""
    assert resp.status_code == status, f"{resp.status_code} {resp.text[:300]}"
    body = resp.json()
    assert body["code"] == code, body
    return body


@contextmanager
def session_task(fxc, endpoint: str, timeout: float = WAIT_S) -> Iterator[str]:
    """The session user's own task (``double(21)`` on the session endpoint,
    through the SDK ``fxc``), submitted on entry: its id.  On leaving, it must
    have succeeded with 42 (waited for up to ``timeout`` seconds)."""
    fid = fxc.register_function(double)
    tid = fxc.run(21, endpoint_id=endpoint, function_id=fid)
    yield tid
    done = fxc.wait([tid], timeout=timeout)[tid]
    assert done["status"] == "success", done
    assert fxc.get_result(tid) == 42


def until(cond: Callable[[], Any], timeout: float = WAIT_S, what: str = "condition") -> Any:
    """Poll ``cond`` (a state we cannot subscribe to) until it is truthy: its
    value; fail after ``timeout`` seconds.  ``cond`` is always tried at least
    once, and once more after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
