"""The SDK waits out a busy service's 429s for as long as it was asked to
(Retry-After), within its retry budget, and raises the typed error after.

* against ``OverloadDouble``: a test double of the service's overload answers
  (429 ``RATE_LIMITED`` / ``LONGPOLL_LIMIT`` / ``QUOTA_*`` with Retry-After,
  507 ``STORE_FULL``), served for real over HTTP; it records when each request
  arrived, so the waits are measured on the server's side;
* against the real session service: the executor's watcher rides out a real
  ``LONGPOLL_LIMIT``, and a real quota refusal whose Retry-After is past the
  budget is raised at once, typed, nothing queued.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import pytest
from flask import Flask, jsonify, request

from funcx import FuncXClient, FuncXExecutor
from funcx.errors import QuotaExceeded, RateLimited, ServiceUnavailable, StoreFull
from funcx.protocol import error_codes
from funcx.sdk.web_client import WebClient
from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
RESULT = "computed by the double"


def double(x):
    return 2 * x


# ------------------------------------------------------------- the test double
@dataclass
class Hit:
    t: float  # time.monotonic() when the request arrived
    method: str
    path: str
    key: str | None  # its Idempotency-Key


class OverloadDouble:
    """A test double of the service's overload answers, not the service: each
    route answers the refusals queued for it in ``refuse[route]`` (status, code,
    Retry-After), then a plausible success.  ``hits`` has every request's
    arrival time, as the server saw it."""

    def __init__(self) -> None:
        from live import Server

        self.hits: list[Hit] = []
        self.refuse: dict[str, list[tuple[int, str, str]]] = {}
        self.tasks: list[str] = []  # task ids handed out by submits
        self.done = threading.Event()  # set once the events long-poll delivered
        self.lock = threading.Lock()
        app = Flask("overload-double")

        @app.before_request
        def _arrived():
            with self.lock:
                self.hits.append(Hit(time.monotonic(), request.method, request.path,
                                     request.headers.get("Idempotency-Key")))

        @app.get("/v2/version")
        def _version():
            return jsonify({"api": "double", "min_sdk_version": "0"})

        @app.get("/v2/tasks/<tid>")
        def _task(tid):
            return self._refusal("task") or jsonify(self._doc(tid, done=True))

        @app.post("/v2/batch_status")
        def _batch_status():
            return self._refusal("batch_status") or jsonify({"results": {
                tid: self._doc(tid, self.done.is_set()) for tid in request.json["task_ids"]}})

        @app.get("/v2/taskgroup/<tg>/events")
        def _events(tg):
            after = request.args.get("after", "0")
            if after == "$":
                return jsonify({"taskgroup_id": tg, "last_id": "0-0", "tasks": []})
            refused = self._refusal("events")
            if refused:
                return refused
            if after not in ("0", "0-0"):  # delivered once; nothing more happens here
                return jsonify({"taskgroup_id": tg, "last_id": after, "tasks": []})
            self.done.set()
            return jsonify({"taskgroup_id": tg, "last_id": "1-0",
                            "tasks": [self._doc(t, True) for t in self.tasks]})

        @app.post("/v3/endpoints/<eid>/submit")
        def _submit(eid):
            refused = self._refusal("submit")
            if refused:
                return refused
            body = request.json
            out = {fid: [str(uuid.uuid4()) for _ in payloads]
                   for fid, payloads in body["tasks"].items()}
            self.tasks += [t for ids in out.values() for t in ids]
            return jsonify({"tasks": out, "task_group_id": body["task_group_id"]})

        self.server = Server(app)
        self.url = self.server.url

    def _refusal(self, route: str):
        with self.lock:
            queued = self.refuse.get(route) or []
            if not queued:
                return None
            status, code, retry_after = queued.pop(0)
        return (jsonify({"code": code, "message": f"the double refuses ({code})"}), status,
                {"Retry-After": retry_after})

    @staticmethod
    def _doc(tid: str, done: bool) -> dict:
        if done:
            return {"task_id": tid, "status": "success", "completion_t": "1",
                    "result": SER.serialize(RESULT)}
        return {"task_id": tid, "status": "waiting-for-ep", "reason": "waiting-for-ep"}

    def on(self, path_part: str) -> list[Hit]:
        return [h for h in self.hits if path_part in h.path]

    def client(self) -> FuncXClient:
        return FuncXClient(self.url, access_token="double-token", do_version_check=False)


@pytest.fixture
def double_service():
    d = OverloadDouble()
    yield d
    d.server.close()


def gaps(hits: list[Hit]) -> list[float]:
    return [b.t - a.t for a, b in itertools.pairwise(hits)]


# ------------------------------------------------------------------- GETs
def test_a_get_answered_429_is_retried_after_retry_after(double_service):
    """The next request arrives no sooner than Retry-After after the refused
    one (the old min(backoff, Retry-After) asked again after 0.1 s)."""
    d = double_service
    d.refuse["task"] = [(429, error_codes.RATE_LIMITED, "1"),
                        (429, error_codes.LONGPOLL_LIMIT, "1")]
    fxc = d.client()
    tid = str(uuid.uuid4())
    assert fxc.get_result(tid) == RESULT  # plain client call: a 429 is waited out
    hits = d.on("/v2/tasks/")
    assert len(hits) == 3
    assert all(g >= 1.0 for g in gaps(hits)), gaps(hits)


def test_no_budget_means_no_retry_and_the_error_is_typed(double_service):
    """A bare WebClient (no ``wait_out_429``) and ``retry_s=0`` ask once; the
    answer arrives typed, with its Retry-After (urllib3 used to turn an answer
    with Retry-After into MaxRetryError, i.e. ServiceUnreachable)."""
    d = double_service
    d.refuse["task"] = [(429, error_codes.LONGPOLL_LIMIT, "1"),
                        (503, error_codes.SERVICE_UNAVAILABLE, "2")]
    web = WebClient(d.url, "double-token")
    with pytest.raises(RateLimited) as ei:
        web.get(f"/v2/tasks/{uuid.uuid4()}")
    assert ei.value.retry_after == 1.0 and ei.value.code == error_codes.LONGPOLL_LIMIT
    assert not getattr(ei.value, "__notes__", None)
    with pytest.raises(ServiceUnavailable) as ei:
        WebClient(d.url, "double-token", wait_out_429=True).get(
            f"/v2/tasks/{uuid.uuid4()}", retry_s=0)
    assert ei.value.retry_after == 2.0
    assert len(d.on("/v2/tasks/")) == 2


def test_budget_exhausted_raises_the_typed_error(double_service, monkeypatch):
    d = double_service
    monkeypatch.setenv("FUNCX_HTTP_RETRY_S", "2.5")
    d.refuse["task"] = [(429, error_codes.RATE_LIMITED, "1")] * 10
    fxc = d.client()
    with pytest.raises(RateLimited) as ei:
        fxc.get_task(str(uuid.uuid4()))
    hits = d.on("/v2/tasks/")
    # at 0, 1 and 2 s; then 1 s more would pass the 2.5 s budget: raised, not asked early
    assert len(hits) == 3 and all(g >= 1.0 for g in gaps(hits)), gaps(hits)
    assert hits[-1].t - hits[0].t < 2.5
    err = ei.value
    assert err.retry_after == 1.0 and err.http_status == 429
    assert "FUNCX_HTTP_RETRY_S" in str(err)  # says what to do next
    assert any("3 attempt(s)" in n for n in err.__notes__), err.__notes__


def test_a_retry_after_past_the_budget_is_raised_at_once(double_service, monkeypatch):
    d = double_service
    monkeypatch.setenv("FUNCX_HTTP_RETRY_S", "5")
    d.refuse["task"] = [(429, error_codes.RATE_LIMITED, "30")]
    t0 = time.monotonic()
    with pytest.raises(RateLimited):
        d.client().get_task(str(uuid.uuid4()))
    assert time.monotonic() - t0 < 5 and len(d.on("/v2/tasks/")) == 1


def test_wait_rides_out_longpoll_limit(double_service):
    """``FuncXClient.wait`` used to raise LONGPOLL_LIMIT to the user."""
    d = double_service
    d.refuse["events"] = [(429, error_codes.LONGPOLL_LIMIT, "1")] * 2
    fxc = d.client()
    batch = fxc.create_batch()
    batch.add(1, endpoint_id=str(uuid.uuid4()), function_id=str(uuid.uuid4()))
    (tid,) = fxc.batch_run(batch)
    docs = fxc.wait([tid], timeout=60)
    assert docs[tid]["result"] == RESULT
    polls = d.on("/events")
    assert len(polls) == 4  # the "$" cursor, two refused, one answered
    assert all(g >= 1.0 for g in gaps(polls[1:])), gaps(polls)


def test_watch_task_group_rides_out_longpoll_limit(double_service):
    d = double_service
    d.refuse["events"] = [(429, error_codes.LONGPOLL_LIMIT, "1")]
    d.tasks.append(str(uuid.uuid4()))
    docs = next(d.client().watch_task_group(str(uuid.uuid4()), timeout=1))
    assert [doc["task_id"] for doc in docs] == d.tasks
    assert all(g >= 1.0 for g in gaps(d.on("/events"))), gaps(d.on("/events"))


# ------------------------------------------------------------- the executor
def test_executor_watcher_waits_retry_after_then_delivers(double_service):
    d = double_service
    d.refuse["events"] = [(429, error_codes.LONGPOLL_LIMIT, "1")] * 3
    ex = FuncXExecutor(endpoint_id=str(uuid.uuid4()), client=d.client())
    try:
        fut = ex.submit_to_registered_function(str(uuid.uuid4()), (1,))
        assert fut.result(timeout=60) == RESULT
    finally:
        ex.shutdown(wait=False)
    polls = d.on("/events")
    assert len(polls) >= 4
    # its own schedule started at 0.5 s: now each wait is what the service asked
    assert all(g >= 1.0 for g in gaps(polls[:4])), gaps(polls)


def test_executor_watcher_does_not_spin_on_submits(double_service):
    """Submits notify the watcher's condition: they must not cut its wait short."""
    d = double_service
    d.refuse["events"] = [(429, error_codes.LONGPOLL_LIMIT, "2")]
    ex = FuncXExecutor(endpoint_id=str(uuid.uuid4()), client=d.client())
    try:
        futs = [ex.submit_to_registered_function(str(uuid.uuid4()), (1,))]
        while not d.on("/events"):  # the first (refused) poll
            futs[0].submitted.wait(0.05)
        for i in range(20):  # each submit wakes the watcher
            futs.append(ex.submit_to_registered_function(str(uuid.uuid4()), (i,)))
        assert all(f.result(timeout=60) == RESULT for f in futs)
    finally:
        ex.shutdown(wait=False)
    polls = d.on("/events")
    assert gaps(polls[:2])[0] >= 2.0, gaps(polls)


# ----------------------------------------------------------------- submits
def test_submit_quota_429_is_retried_with_the_same_key(double_service):
    d = double_service
    d.refuse["submit"] = [(429, error_codes.QUOTA_QUEUED_TASKS, "1"),
                          (429, error_codes.QUOTA_STORED_BYTES, "1")]
    fxc = d.client()
    ids = fxc.map_run(range(3), endpoint_id=str(uuid.uuid4()), function_id=str(uuid.uuid4()))
    assert ids == d.tasks and len(ids) == 3
    hits = d.on("/submit")
    assert len(hits) == 3 and all(g >= 1.0 for g in gaps(hits)), gaps(hits)
    assert hits[0].key and {h.key for h in hits} == {hits[0].key}  # the same request, resent


def test_submit_quota_past_the_budget_raises_quota_exceeded(double_service, monkeypatch):
    d = double_service
    monkeypatch.setenv("FUNCX_SUBMIT_RETRY_S", "1.5")  # a submit's own budget
    d.refuse["submit"] = [(429, error_codes.QUOTA_QUEUED_TASKS, "1")] * 5
    fxc = d.client()
    with pytest.raises(QuotaExceeded) as ei:
        fxc.run(1, endpoint_id=str(uuid.uuid4()), function_id=str(uuid.uuid4()))
    assert type(ei.value) is QuotaExceeded and "submit again" in str(ei.value)
    assert len(d.on("/submit")) == 2 and not d.tasks


def test_store_full_is_typed_and_not_retried(double_service):
    d = double_service
    d.refuse["submit"] = [(507, error_codes.STORE_FULL, "1")] * 5
    fxc = d.client()
    t0 = time.monotonic()
    with pytest.raises(StoreFull) as ei:
        fxc.run(1, endpoint_id=str(uuid.uuid4()), function_id=str(uuid.uuid4()))
    assert time.monotonic() - t0 < 1.0 and len(d.on("/submit")) == 1
    assert isinstance(ei.value, QuotaExceeded)  # what caught it before still catches it
    assert "operator" in str(ei.value)


def test_executor_fails_futures_with_store_full(double_service):
    d = double_service
    d.refuse["submit"] = [(507, error_codes.STORE_FULL, "1")] * 5
    ex = FuncXExecutor(endpoint_id=str(uuid.uuid4()), client=d.client())
    try:
        fut = ex.submit_to_registered_function(str(uuid.uuid4()), (1,))
        assert isinstance(fut.exception(timeout=30), StoreFull)
    finally:
        ex.shutdown(wait=False)
    assert len(d.on("/submit")) == 1


# ------------------------------------------------------ the real service
class _Seen(logging.Handler):
    """Sets ``event`` when the executor logs a record containing ``text``."""

    def __init__(self, text: str):
        super().__init__(logging.INFO)
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.mark.slow  # waits out a real Retry-After (~4 s): the slow CI step
def test_executor_rides_out_a_real_longpoll_limit(fxc, endpoint, redis_client):
    """The identity's long-poll slots are all taken (as if by 16 other polls):
    the real service answers 429 LONGPOLL_LIMIT; once they are free the
    watcher's next poll, no sooner than the Retry-After, delivers the result."""
    from backend.routes.taskgroups import RETRY_AFTER_S
    from funcx.defaults import setting
    from funcx.protocol import keys

    slots = keys.longpolls(fxc.whoami()["user_id"])
    fake = [f"held-by-test-{i}" for i in range(int(setting("LONGPOLL_PER_IDENTITY")))]
    seen = _Seen(error_codes.LONGPOLL_LIMIT)
    logger = logging.getLogger("funcx.executor")
    old_level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    polls: list[float] = []
    ex = FuncXExecutor(endpoint_id=endpoint, client=fxc)
    ex._watch_web.request_hooks.append(
        lambda method, path, n: polls.append(time.monotonic()) if "/events" in path else None)
    redis_client.zadd(slots, {f: time.time() + 300 for f in fake})
    try:
        fut = ex.submit(double, 21)
        assert seen.event.wait(60), "the watcher was never refused"
        refused_polls = len(polls)
        redis_client.zrem(slots, *fake)
        assert fut.result(timeout=60) == 42
    finally:
        redis_client.zrem(slots, *fake)
        logger.removeHandler(seen)
        logger.setLevel(old_level)
        ex.shutdown(wait=False)
    assert len(polls) > refused_polls
    assert polls[refused_polls] - polls[refused_polls - 1] >= min(RETRY_AFTER_S)


@pytest.fixture
def small_quota_service(monkeypatch, service, redis_client):
    """A second real web server on the session's Redis, with a quota of 3 queued
    tasks, and a new user of it."""
    from live import Server, service_redis_url

    from backend import admin
    from backend.app import create_app

    monkeypatch.setenv("FUNCX_QUOTA_QUEUED_TASKS", "3")
    srv = Server(create_app(service_redis_url()))
    user = admin.add_user(redis_client, f"quota-{uuid.uuid4().hex[:8]}")
    yield srv.url, user["token"]
    srv.close()


def test_real_quota_refusal_past_the_budget_is_raised_typed(small_quota_service, redis_client,
                                                           monkeypatch):
    url, tok = small_quota_service
    monkeypatch.setenv("FUNCX_SUBMIT_RETRY_S", "5")  # below the service's Retry-After (30 s)
    fxc = FuncXClient(url, access_token=tok)
    fxc.throttling_enabled = False
    eid = fxc.register_endpoint(f"quota-{uuid.uuid4().hex[:6]}")["endpoint_id"]  # no agent
    fid = fxc.register_function(double)
    fxc.map_run(range(3), endpoint_id=eid, function_id=fid)
    queued = redis_client.xlen(f"fx:ep:{eid}:tasks")
    sent = fxc.web_client.request_count
    t0 = time.monotonic()
    with pytest.raises(QuotaExceeded) as ei:
        fxc.run(4, endpoint_id=eid, function_id=fid)
    assert time.monotonic() - t0 < 5  # not slept past the budget
    assert fxc.web_client.request_count == sent + 1  # asked once: 30 s > 5 s budget
    assert ei.value.code == error_codes.QUOTA_QUEUED_TASKS and ei.value.retry_after == 30
    assert redis_client.xlen(f"fx:ep:{eid}:tasks") == queued  # nothing queued
