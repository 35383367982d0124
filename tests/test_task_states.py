"""Status that tells the truth (issue 16, point 3): distinct states for a task
queued at a live endpoint behind busy workers (``waiting-for-launch``),
waiting for nodes (``waiting-for-nodes``: tests/test_endpoint_failures.py and
tests/test_block_problems.py), running, and an endpoint that is offline
(``waiting-for-ep`` with ``details.endpoint_status: "offline"``; the live case
is tests/test_cancel_running.py).  The read-time rule is pure and tested here
without a service; the busy-workers case on the session's real endpoint."""
from __future__ import annotations

import pytest
from faults.faultlib import wait_until

from backend.store.tasks import as_seen_now
from funcx.protocol.states import OFFLINE_SHOWN, TaskState, shown_status

UNFINISHED = ["received", "waiting-for-ep", "waiting-for-nodes", "waiting-for-launch",
              "running"]


@pytest.mark.parametrize("stored", UNFINISHED)
def test_an_offline_endpoints_unfinished_task_waits_for_it(stored):
    assert shown_status(stored, endpoint_online=True) == stored
    assert shown_status(stored, endpoint_online=False) == OFFLINE_SHOWN == "waiting-for-ep"


@pytest.mark.parametrize("stored", ["success", "failed", "cancelled"])
def test_a_finished_task_reads_as_stored_whatever_its_endpoint(stored):
    assert shown_status(stored, endpoint_online=False) == stored


def test_the_document_of_a_running_task_on_an_offline_endpoint():
    doc = {"task_id": "t", "status": "running", "details": {"reason": "running"},
           "reason": "running"}
    as_seen_now(doc, endpoint_online=False)
    assert doc["status"] == "waiting-for-ep" == doc["reason"] == doc["details"]["reason"]
    assert doc["details"]["endpoint_status"] == "offline"
    assert doc["details"]["last_status"] == "running"


def test_an_online_endpoints_task_keeps_its_state_and_says_online():
    doc = {"task_id": "t", "status": "waiting-for-launch"}  # a listing row: no details
    as_seen_now(doc, endpoint_online=True)
    assert doc == {"task_id": "t", "status": "waiting-for-launch",
                   "details": {"endpoint_status": "online"}}


def test_a_queued_task_of_an_offline_endpoint_has_no_last_status():
    doc = {"task_id": "t", "status": "waiting-for-ep", "details": "not a dict"}
    as_seen_now(doc, endpoint_online=False)
    assert doc["details"] == {"endpoint_status": "offline"}


@pytest.mark.parametrize("status", ["success", "cancelled", "unknown"])
def test_finished_and_unknown_documents_are_left_alone(status):
    doc = {"task_id": "t", "status": status}
    assert as_seen_now(doc, endpoint_online=False) == {"task_id": "t", "status": status}


def test_every_state_has_its_meaning_written_down():
    import funcx.protocol.states as states

    for s in TaskState:
        assert f"``{s.value}``" in (states.__doc__ or ""), s


# ---------------------------------------------------------------- live
def hold(release: str, seconds: float = 0.0):
    """Keep a worker busy until the test creates the file ``release``."""
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.05)
    return seconds


def test_tasks_behind_busy_workers_are_waiting_for_launch(fxc, endpoint, http, tmp_path):
    """Both workers of the session's endpoint busy: the next task is queued at a
    live endpoint, waiting for a worker (not waiting-for-ep), and reads so in
    its document and in the task listing; the busy ones read running.  The
    busy tasks end only when the test releases them, so what is observed
    before that is ordered by events, not by the clock."""
    fid = fxc.register_function(hold)
    release = tmp_path / "release"
    busy = [fxc.run(str(release), endpoint_id=endpoint, function_id=fid) for _ in range(2)]
    (tmp_path / "go").touch()
    queued = fxc.run(str(tmp_path / "go"), endpoint_id=endpoint, function_id=fid)

    def state(tid: str) -> dict:
        return http.get(f"{http.base_url}/v2/tasks/{tid}").json()

    try:
        doc = wait_until(lambda: (lambda d: d if d["status"] == "waiting-for-launch" else None)(
            state(queued)), 30)
        assert doc, state(queued)
        assert doc["details"]["endpoint_status"] == "online"
        assert wait_until(lambda: all(state(t)["status"] == "running" for t in busy), 30), \
            [state(t) for t in busy]
        rows = http.get(f"{http.base_url}/v2/tasks",
                        params={"task_group_id": fxc.session_task_group_id, "limit": 50}).json()
        row = next(r for r in rows["tasks"] if r["task_id"] == queued)
        assert row["status"] == "waiting-for-launch", row
        assert row["details"]["endpoint_status"] == "online"
        # still held: the queue was seen while both workers were busy, not after
        assert all(state(t)["status"] == "running" for t in busy)
    finally:
        release.touch()
    assert fxc.wait(busy + [queued], timeout=60)[queued]["status"] == "success"
