"""Cancelling many tasks at once (review of issue 16, findings 2 and 3):
``POST /v2/tasks/cancel`` takes a list of ids, so ``fxc.cancel``, the
executor's ``shutdown(cancel_futures=True)`` and ``funcx task cancel`` send a
request per 10,000 ids rather than one per task (which the client's throttle
of 20 requests per 10 s refused from the 21st); an executor future cancelled
while queued or while its submit is in flight never runs.

Real parts: the session's service (Flask, Redis); the tasks go to an endpoint
that is registered but not running, so they wait and can be cancelled at
leisure, and "did it run" is "is it still waiting on the service"."""
from __future__ import annotations

import threading
import uuid

import pytest
from faults.faultlib import wait_until
from typer.testing import CliRunner

from funcx import FuncXClient, FuncXExecutor
from funcx.errors import NotFound
from funcx.protocol import error_codes

TAG = uuid.uuid4().hex[:8]


def idle(x):
    return x


@pytest.fixture(scope="module")
def offline_ep(fxc):
    """An endpoint that is never started: its tasks wait for it."""
    return fxc.register_endpoint(f"cancel-batch-{TAG}")["endpoint_id"]


@pytest.fixture(scope="module")
def fid(fxc):
    return fxc.register_function(idle, function_name=f"idle-{TAG}")


@pytest.fixture
def throttled(service):
    """A client with the SDK's default throttle (20 requests per 10 s) on."""
    c = FuncXClient()
    assert c.throttling_enabled
    return c


def queue_tasks(fxc, eid: str, fid: str, n: int) -> list[str]:
    batch = fxc.create_batch()
    for i in range(n):
        batch.add(i, endpoint_id=eid, function_id=fid)
    return fxc.batch_run(batch)


def statuses(fxc, tids: list[str]) -> set[str]:
    return {d["status"] for d in fxc._batch_result(tids).values()} if tids else set()


def test_cancelling_more_tasks_than_the_throttle_allows_requests(throttled, offline_ep, fid):
    tids = queue_tasks(throttled, offline_ep, fid, 45)
    assert throttled.cancel(tids) == {t: True for t in tids}  # 45 > 20 requests before
    assert throttled.cancel(tids[:3]) == {t: False for t in tids[:3]}  # finished: a no-op
    assert statuses(throttled, tids) == {"cancelled"}


def test_batch_cancel_answers_per_id_without_revealing_others_tasks(fxc, http, offline_ep, fid,
                                                                    redis_client):
    from backend.store import users

    mine = queue_tasks(fxc, offline_ep, fid, 2)
    other = FuncXClient(access_token=users.issue_token(
        redis_client, users.create_user(redis_client, f"other-{TAG}")))
    other_ep = other.register_endpoint(f"other-{TAG}")["endpoint_id"]
    theirs = queue_tasks(other, other_ep, other.register_function(idle), 1)
    unknown = str(uuid.uuid4())
    resp = http.post(f"{http.base_url}/v2/tasks/cancel",
                     json={"task_ids": [*mine, *theirs, unknown]})
    assert resp.status_code == 200, resp.text
    res = resp.json()["results"]
    assert res[mine[0]] == {"cancelled": True, "status": "cancelled"}
    assert res[theirs[0]] == res[unknown]  # someone else's task reads as unknown
    assert res[unknown]["cancelled"] is False and res[unknown]["status"] == "unknown"
    assert other.get_task(theirs[0])["status"] != "cancelled"  # and is left alone
    with pytest.raises(NotFound, match=unknown):  # the SDK: the others are cancelled
        fxc.cancel([mine[1], unknown])
    assert fxc.get_task(mine[1])["status"] == "cancelled"


def test_batch_cancel_refuses_too_many_or_malformed_ids(http):
    from funcx.defaults import setting

    most = int(setting("BATCH_STATUS_MAX"))
    too_many = http.post(f"{http.base_url}/v2/tasks/cancel",
                         json={"task_ids": [str(uuid.uuid4()) for _ in range(most + 1)]})
    assert too_many.status_code == 400
    assert too_many.json()["code"] == error_codes.TOO_MANY_TASK_IDS
    for body in ({"task_ids": ["not-a-uuid"]}, {"task_ids": [1]}, {"task_ids": "x"}, {}):
        bad = http.post(f"{http.base_url}/v2/tasks/cancel", json=body)
        assert bad.status_code == 400 and bad.json()["code"] == error_codes.BAD_REQUEST, body


def test_cli_task_cancel_takes_many_ids(fxc, offline_ep, fid, monkeypatch):
    from funcx_cli.main import app

    tids = queue_tasks(fxc, offline_ep, fid, 25)
    done = queue_tasks(fxc, offline_ep, fid, 1)
    fxc.cancel(done)
    res = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["task", "cancel", *tids, *done])
    assert res.exit_code == 1, res.output  # one had finished (cancelled before)
    assert res.output.count(": cancelled\n") == 25, res.output
    assert f"{done[0]}: not cancelled (it had finished: cancelled)" in res.output
    assert statuses(fxc, tids) == {"cancelled"}


class GatedSubmits:
    """The executor's client, whose first submit request waits for ``gate``:
    futures submitted meanwhile stay queued, the first one's submit is in flight."""

    def __init__(self, client: FuncXClient):
        self.client, self.gate, self.entered, self.calls = client, threading.Event(), \
            threading.Event(), 0
        self._orig = client.submit_tasks
        client.submit_tasks = self.submit_tasks  # type: ignore[method-assign]

    def submit_tasks(self, *args, **kwargs):
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self._orig(*args, **kwargs)


def test_shutdown_cancel_futures_cancels_queued_and_in_flight_futures(offline_ep, fid, service):
    client = FuncXClient()
    client.throttling_enabled = False
    gated = GatedSubmits(client)
    ex = FuncXExecutor(endpoint_id=offline_ep, client=client, batch_size=1)
    first = ex.submit_to_registered_function(fid, (0,))
    assert gated.entered.wait(30)  # its submit is in flight (not answered yet)
    queued = [ex.submit_to_registered_function(fid, (i,)) for i in range(1, 30)]
    closer = threading.Thread(target=ex.shutdown, kwargs={"wait": True, "cancel_futures": True})
    closer.start()
    assert wait_until(lambda: all(f.cancelled() for f in [first, *queued]), 30)
    gated.gate.set()  # the in-flight submit is answered after its future was cancelled
    closer.join(60)
    assert not closer.is_alive(), "shutdown(cancel_futures=True) kept waiting"
    assert gated.calls == 1  # the queued futures were never submitted
    assert all(f.task_id is None for f in queued)
    assert first.task_id is not None  # submitted before it was cancelled: cancelled remotely
    assert client.get_task(first.task_id)["status"] == "cancelled"


def test_a_future_cancelled_while_its_submit_is_in_flight_is_cancelled_remotely(
        offline_ep, fid, service):
    client = FuncXClient()
    client.throttling_enabled = False
    gated = GatedSubmits(client)
    with FuncXExecutor(endpoint_id=offline_ep, client=client) as ex:
        fut = ex.submit_to_registered_function(fid, (1,))
        assert gated.entered.wait(30)
        assert fut.cancel() is True and fut.task_id is None
        gated.gate.set()
        assert fut.submitted.wait(30)
    assert client.get_task(fut.task_id)["status"] == "cancelled"  # it never runs


def test_shutdown_cancels_many_submitted_futures_in_batches(offline_ep, fid, service):
    client = FuncXClient()  # throttled: one request per future would fail from the 21st
    ex = FuncXExecutor(endpoint_id=offline_ep, client=client, batch_size=100)
    futs = [ex.submit_to_registered_function(fid, (i,)) for i in range(40)]
    assert all(f.submitted.wait(30) for f in futs)
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in futs)
    assert statuses(client, [f.task_id for f in futs]) == {"cancelled"}
