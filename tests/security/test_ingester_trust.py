"""Hostile endpoints against the shared result ingester.

Every endpoint holds Redis credentials for its own results stream, and the
one ingester reads all of them.  An attacker here is an ordinary second user
who registered an endpoint and writes whatever it likes, with that
endpoint's own credentials, into that endpoint's own results stream.  Each
test proves the attack fails *and* that the session user's work on the
session endpoint completes meanwhile, with the same ingester process.
"""
from __future__ import annotations

import json
import time
import uuid

import psutil
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tenants import SER, Tenant, double, new_user, until

from funcx.protocol.messages import ProtocolError, Result, StatusUpdate
from funcx.protocol.streams import decode_result_entry, decode_task_entry, encode_results


@pytest.fixture(scope="module")
def victim(service, token) -> Tenant:
    return Tenant(service, token, timeout=30)


@pytest.fixture(scope="module")
def attacker(service, redis_client) -> Tenant:
    return new_user(service, redis_client, "mallory", timeout=30)


@pytest.fixture(scope="module")
def evil_stream(attacker):
    """(endpoint id, a Redis client with that endpoint's own credentials)."""
    info = attacker.endpoint()
    r = redis.Redis.from_url(info["redis_url"], decode_responses=False)
    yield info["endpoint_id"], r
    r.close()


def _ingester_pids(funcx_home) -> set[int]:
    """The session service's ingester processes (other services may run here)."""
    out = set()
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "backend.ingester" in " ".join(p.info["cmdline"] or []) \
                    and p.environ().get("FUNCX_HOME") == str(funcx_home):
                out.add(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _dead_letters(redis_client, origin: str) -> list[dict]:
    from backend.store import deadletters

    return [d for d in deadletters.list_recent(redis_client, 10_000) if d["origin"] == origin]


def _run_one(fxc, endpoint) -> int:
    """The session user's own work: one task on the session endpoint."""
    fid = fxc.register_function(double)
    tid = fxc.run(21, endpoint_id=endpoint, function_id=fid)
    deadline = time.monotonic() + 60
    while True:
        try:
            return fxc.get_result(tid)
        except Exception as e:  # noqa: BLE001 - TaskPending until it is done
            if type(e).__name__ != "TaskPending" or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


GOOD_META = [str(uuid.uuid4()), "success", "", repr(time.time()), None]
BAD_ENTRIES = {
    "status update with non-list task_ids": {b"kind": b"status", b"status": b"running",
                                             b"task_ids": b'"abc"'},
    "status update with an object": {b"kind": b"status", b"status": b"running",
                                     b"task_ids": b'{"a": 1}'},
    "status update to a terminal state": {b"kind": b"status", b"status": b"success",
                                          b"task_ids": json.dumps([str(uuid.uuid4())]).encode()},
    "completion_t is a list": {b"kind": b"results", b"meta": json.dumps(
        [[str(uuid.uuid4()), "success", "", [1, 2], None]]).encode(), b"data": b"1\nx",
        b"exc": b"0\n"},
    "status cancelled from an endpoint": {b"kind": b"results", b"meta": json.dumps(
        [[str(uuid.uuid4()), "cancelled", "", repr(time.time()), None]]).encode(),
        b"data": b"1\nx", b"exc": b"0\n"},
    "meta is not JSON": {b"kind": b"results", b"meta": b"[[", b"data": b"", b"exc": b""},
    "counts differ": {b"kind": b"results", b"meta": json.dumps([GOOD_META]).encode(),
                      b"data": b"", b"exc": b""},
    "packed length lies": {b"kind": b"results", b"meta": json.dumps([GOOD_META]).encode(),
                           b"data": b"999\nx", b"exc": b"0\n"},
    "not UTF-8": {b"kind": b"results", b"meta": b"\xff\xfe\x80", b"data": b"\xc3", b"exc": b""},
    "unknown kind": {b"kind": b"rm -rf", b"x": b"y"},
    "future version": {b"kind": b"results", b"v": b"2", b"meta": b"[]", b"data": b"",
                       b"exc": b""},
    "task id with a key separator": {b"kind": b"result", b"task_id": b"x:fx:user:1",
                                     b"status": b"success", b"data": b""},
    "details not an object": {b"kind": b"result", b"task_id": str(uuid.uuid4()).encode(),
                              b"status": b"failed", b"data": b"", b"details": b"[1]"},
}


def test_malformed_entries_are_refused_alone_and_results_keep_flowing(
        evil_stream, redis_client, fxc, endpoint, funcx_home):
    eid, r = evil_stream
    pids_before = _ingester_pids(funcx_home)
    assert pids_before, "the session's ingester is not running"
    origin = f"endpoint:{eid}"
    seen = len(_dead_letters(redis_client, origin))
    ids = {}
    for name, fields in BAD_ENTRIES.items():
        ids[r.xadd(f"fx:ep:{eid}:results", fields).decode()] = name
    # the victim's work completes while (and after) the ingester meets them
    assert _run_one(fxc, endpoint) == 42
    letters = until(lambda: (d := _dead_letters(redis_client, origin))
                    and len(d) >= seen + len(BAD_ENTRIES) and d,
                    timeout=20, what="every bad entry to be dead-lettered")
    by_id = {d["entry_id"]: d for d in letters}
    for entry_id, name in ids.items():
        assert entry_id in by_id, f"{name}: not dead-lettered"
        assert by_id[entry_id]["reason"], name
        assert by_id[entry_id]["stream"] == f"fx:ep:{eid}:results"
    # each was acknowledged and deleted, not left to be re-read forever
    assert r.xlen(f"fx:ep:{eid}:results") == 0
    assert _ingester_pids(funcx_home) == pids_before, "the ingester died and was restarted"
    assert _run_one(fxc, endpoint) == 42


def test_forged_result_for_another_tenants_task_is_refused(
        victim, evil_stream, attacker, redis_client, fxc, endpoint):
    eid, r = evil_stream
    # the victim's task waits on the victim's own (never started) endpoint
    quiet = victim.endpoint()["endpoint_id"]
    _, (tid,) = victim.submit(quiet, victim.function())
    assert victim.status(tid) == "waiting-for-ep"
    # the attacker claims it finished, naming the attacker's own task group
    evil_tg, _ = attacker.submit(eid, attacker.function())
    forged = Result(tid, "success", data=SER.serialize("pwned"), task_group_id=evil_tg)
    r.xadd(f"fx:ep:{eid}:results", encode_results([forged]))
    r.xadd(f"fx:ep:{eid}:results", StatusUpdate("running", [tid]).to_fields())
    origin = f"endpoint:{eid}"
    until(lambda: sum(1 for d in _dead_letters(redis_client, origin)
                      if tid in d["fields"]) >= 2, timeout=20, what="the forged result to be refused")
    reasons = {d["reason"] for d in _dead_letters(redis_client, origin) if tid in d["fields"]}
    assert reasons == {"the task belongs to another endpoint"}
    assert victim.status(tid) == "waiting-for-ep"
    rec = redis_client.hgetall(f"fx:task:{tid}")
    assert "result" not in rec and rec["task_group_id"] != evil_tg
    events = attacker.ok("GET", f"/v2/taskgroup/{evil_tg}/events", params={"after": "0"})
    assert tid not in {t["task_id"] for t in events["tasks"]}
    assert _run_one(fxc, endpoint) == 42


def test_result_for_an_unknown_task_is_refused(evil_stream, redis_client):
    eid, r = evil_stream
    tid = str(uuid.uuid4())
    r.xadd(f"fx:ep:{eid}:results", encode_results([Result(tid, "failed", data="x")]))
    until(lambda: any(tid in d["fields"] for d in _dead_letters(redis_client, f"endpoint:{eid}")),
          timeout=20, what="the unknown task's result to be refused")
    assert not redis_client.exists(f"fx:task:{tid}")


def test_endpoint_cannot_write_where_the_ingester_or_others_read(evil_stream, endpoint):
    """Its ACL user reaches its own keys only: not another endpoint's results
    stream, not the dead-letter stream, not task records or group events."""
    eid, r = evil_stream
    for key in (f"fx:ep:{endpoint}:results", "fx:deadletters", f"fx:task:{uuid.uuid4()}",
                f"fx:tg:{uuid.uuid4()}:events"):
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.xadd(key, {"kind": "results"})


# ------------------------------------------------------------ decoder fuzzing
texts = st.text(max_size=64) | st.sampled_from(["results", "status", "result", "tasks", "1", ""])
field_maps = st.dictionaries(
    st.sampled_from(["kind", "v", "meta", "data", "exc", "status", "task_ids", "task_id",
                     "completion_t", "details", "payloads", "function_id", "payload",
                     "resource_specification", "other"]),
    texts | st.builds(json.dumps, st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
        max_leaves=12)),
    max_size=8)


@settings(max_examples=400, deadline=None)
@given(field_maps)
def test_result_entry_decoder_raises_only_protocol_error(fields):
    try:
        out = decode_result_entry(fields)
    except ProtocolError:
        return
    for item in out:  # what passes is well-typed
        assert isinstance(item, (Result, StatusUpdate))
        if isinstance(item, Result):
            assert item.status in ("success", "failed")
        else:
            assert item.status in ("waiting-for-nodes", "waiting-for-launch", "running")
            assert all(isinstance(t, str) for t in item.task_ids)


@settings(max_examples=400, deadline=None)
@given(field_maps)
def test_task_entry_decoder_raises_only_protocol_error(fields):
    try:
        decode_task_entry(fields)
    except ProtocolError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.dictionaries(st.binary(min_size=1, max_size=12), st.binary(max_size=64),
                       min_size=1, max_size=6))
def test_ingester_survives_any_raw_entry(service, redis_client, fields):
    """The ingester's own code, in-process against the real Redis, fed any
    bytes an endpoint could write: it refuses or applies, never raises."""
    from backend.ingester import Ingester
    from backend.store import deadletters

    ing = Ingester(redis_client)
    stream = f"fx:ep:{uuid.uuid4()}:results"
    before = deadletters.count(redis_client)
    handled = ing.handle([(stream.encode(), [(b"1-1", fields)])])
    assert handled == 1
    assert ing.applied == 0 and ing.refused == 1  # no such task can exist: refused either way
    assert deadletters.count(redis_client) == before + 1


def test_admin_lists_and_clears_dead_letters(evil_stream, redis_client):
    """``funcx admin dead-letters`` shows what was refused, and clears it."""
    import os
    import subprocess
    import sys

    eid, r = evil_stream
    entry = r.xadd(f"fx:ep:{eid}:results", {b"kind": b"status", b"task_ids": b"7"}).decode()
    until(lambda: any(d["entry_id"] == entry for d in _dead_letters(redis_client, f"endpoint:{eid}")),
          timeout=20, what="the entry to be dead-lettered")

    def fx(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "funcx_cli.main", "admin", "dead-letters",
                               *args], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ))

    shown = fx("list", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    mine = [d for d in rows if d["entry_id"] == entry]
    assert mine and mine[0]["origin"] == f"endpoint:{eid}" and "status entry" in mine[0]["reason"]
    cleared = fx("clear")
    assert cleared.returncode == 0 and cleared.stdout.startswith("Cleared ")
    assert json.loads(fx("list", "--format", "json").stdout) == []
