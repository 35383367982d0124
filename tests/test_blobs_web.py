"""The binary path, web side (issue 20; backend/routes/blobs.py,
backend/store/blobs.py): frames submit bodies on the session's real service
(gunicorn, embedded Redis, ingester), an endpoint that is registered but
never started (so its task stream can be read as it was written), and
results written as its agent writes them (its own Redis ACL credentials)."""
from __future__ import annotations

import time
import uuid

import pytest
import redis
import requests

from funcx.protocol import error_codes, keys
from funcx.protocol.messages import Result
from funcx.protocol.streams import decode_task_entry, encode_results
from funcx.serialize import FuncXSerializer, binary, frames
from funcx.serialize.buffers import pack_buffers, unpack_buffers

BIG = b"\x01\x02blob" * 50_000  # 300 kB: past FUNCX_BLOB_MIN_BYTES, under the 1 MiB test limit


def double(x):
    return x * 2


@pytest.fixture(scope="module")
def parked(fxc):
    """(endpoint id, agent Redis URL, function id): an endpoint nobody runs."""
    reg = fxc.register_endpoint(f"blobs-parked-{uuid.uuid4().hex[:6]}")
    fid = fxc.register_function(double)
    yield reg["endpoint_id"], reg["redis_url"], fid
    fxc.delete_endpoint(reg["endpoint_id"])


@pytest.fixture(scope="module")
def raw(service):
    from live import service_redis_url

    client = redis.Redis.from_url(service_redis_url())
    yield client
    client.close()


def _post_frames(http, eid: str, header: dict, got: list[bytes], **headers) -> requests.Response:
    return http.post(f"{http.base_url}/v3/endpoints/{eid}/submit", data=frames.encode(header, got),
                     headers={"Content-Type": frames.MEDIA_TYPE, **headers}, timeout=60)


def _payload(*items: str) -> str:
    return pack_buffers(list(items))


def _blob_keys(raw, eid: str) -> set[bytes]:
    return set(raw.scan_iter(match=keys.ep_blob(eid, "*"), count=1000))


def _await_event(http, tg: str, tid: str, timeout: float = 30) -> None:
    """Wait (long poll: an event, not a sleep) until ``tid``'s completion event."""
    deadline, after = time.monotonic() + timeout, "0"
    while time.monotonic() < deadline:
        got = http.get(f"{http.base_url}/v2/taskgroup/{tg}/events",
                       params={"after": after, "timeout": 5}, timeout=40).json()
        after = got["last_id"]
        if any(d["task_id"] == tid for d in got["tasks"]):
            return
    raise AssertionError(f"no completion event for {tid}")


def test_a_frames_submit_stores_each_frame_as_a_blob_and_queues_a_small_entry(http, parked, raw,
                                                                               redis_client):
    eid, _, fid = parked
    frame = binary.dumps((BIG,))
    kwargs = FuncXSerializer().serialize({})
    header = {"tasks": {fid: [_payload("bb\n0", kwargs)]}, "task_group_id": str(uuid.uuid4())}
    before = raw.xlen(keys.ep_tasks(eid))
    resp = _post_frames(http, eid, header, [frame])
    assert resp.status_code == 200, resp.text
    tid = resp.json()["tasks"][fid][0]
    entry_id, fields = redis_client.xrange(keys.ep_tasks(eid))[-1]
    assert raw.xlen(keys.ep_tasks(eid)) == before + 1
    assert sum(len(v) for v in fields.values()) < 4096  # no base64 of the input in the stream
    task = next(t for t in decode_task_entry(fields) if t.task_id == tid)
    args_item, kwargs_item = unpack_buffers(task.payload)
    assert kwargs_item == kwargs
    bid = binary.ref_name(args_item)
    assert raw.get(keys.ep_blob(eid, bid)) == frame  # the raw bytes, as sent
    assert 0 < raw.ttl(keys.ep_blob(eid, bid)) <= 14 * 24 * 3600
    # the stored-bytes quota counts the frame
    assert int(redis_client.hget(keys.task(tid), "payload_bytes")) >= binary.size(frame)


@pytest.mark.parametrize("arg", [3, "array"], ids=["small", "bb-in-base64"])
def test_a_json_submit_is_queued_as_before(http, parked, redis_client, arg):
    """Also one whose base64 happens to hold ``bb\n`` at a line's end (not
    a reference item: only a whole packed item is)."""
    eid, _, fid = parked
    if arg == "array":
        import numpy as np

        arg = np.arange(40_000, dtype=np.float64)
    payload = FuncXSerializer().serialize_payload((arg,), {})
    if not isinstance(arg, int):
        assert binary.REF_PREFIX in payload
    resp = http.post(f"{http.base_url}/v3/endpoints/{eid}/submit",
                     json={"tasks": {fid: [payload]}}, timeout=30)
    assert resp.status_code == 200, resp.text
    tid = resp.json()["tasks"][fid][0]
    _, fields = redis_client.xrange(keys.ep_tasks(eid))[-1]
    assert next(t for t in decode_task_entry(fields) if t.task_id == tid).payload == payload


HOSTILE = {
    "not a frames body": lambda fid, f: b"FXF1\nxyz",
    "truncated frame": lambda fid, f: frames.encode({"tasks": {fid: [_payload("bb\n0")]}}, [f])[:-10],
    "bytes after the last frame": lambda fid, f: frames.encode(
        {"tasks": {fid: [_payload("bb\n0")]}}, [f]) + b"junk",
    "header not an object": lambda fid, f: frames.encode([], [f]),  # type: ignore[arg-type]
    "reference to a missing frame": lambda fid, f: frames.encode(
        {"tasks": {fid: [_payload("bb\n3")]}}, [f]),
    "frame referenced twice": lambda fid, f: frames.encode(
        {"tasks": {fid: [_payload("bb\n0"), _payload("bb\n0")]}}, [f]),
    "frame never referenced": lambda fid, f: frames.encode(
        {"tasks": {fid: [_payload("bb\n0")]}}, [f, f]),
    "malformed reference": lambda fid, f: frames.encode(
        {"tasks": {fid: [_payload("bb\n../0")]}}, [f]),
    "a blob id instead of a frame index": lambda fid, f: frames.encode(
        {"tasks": {fid: [_payload("bb\n" + uuid.uuid4().hex)]}}, [f]),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_frames_body_is_refused_with_frames_invalid_and_stores_nothing(http, parked,
                                                                                raw, case):
    eid, _, fid = parked
    frame = binary.dumps((BIG,))
    blobs_before, queued_before = _blob_keys(raw, eid), raw.xlen(keys.ep_tasks(eid))
    resp = http.post(f"{http.base_url}/v3/endpoints/{eid}/submit", data=HOSTILE[case](fid, frame),
                     headers={"Content-Type": frames.MEDIA_TYPE}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == error_codes.FRAMES_INVALID
    assert resp.json()["message"]
    assert _blob_keys(raw, eid) == blobs_before
    assert raw.xlen(keys.ep_tasks(eid)) == queued_before


def test_a_retried_frames_submit_stores_its_blobs_once(http, parked, raw):
    """The same Idempotency-Key again: the first answer, and no second copy
    of the frames (the first request's tasks reference the first blobs)."""
    eid, _, fid = parked
    header = {"tasks": {fid: [_payload("bb\n0")]}, "task_group_id": str(uuid.uuid4())}
    before = _blob_keys(raw, eid)
    key = uuid.uuid4().hex
    first = _post_frames(http, eid, header, [binary.dumps((BIG,))], **{"Idempotency-Key": key})
    stored = _blob_keys(raw, eid) - before
    again = _post_frames(http, eid, header, [binary.dumps((BIG,))], **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["tasks"] == first.json()["tasks"]
    assert len(stored) == 1 and _blob_keys(raw, eid) - before == stored


def test_a_frames_header_with_a_lone_surrogate_is_a_clean_400(http, parked, raw):
    eid, _, fid = parked
    before = _blob_keys(raw, eid)
    body = frames.encode({"tasks": {fid: [_payload("bb\n0")]}, "task_group_id": "\ud800"},
                         [binary.dumps((BIG,))])
    resp = http.post(f"{http.base_url}/v3/endpoints/{eid}/submit", data=body,
                     headers={"Content-Type": frames.MEDIA_TYPE}, timeout=30)
    assert resp.status_code == 400 and resp.json()["code"] == error_codes.BAD_REQUEST
    assert "surrogate" in resp.json()["message"]
    assert _blob_keys(raw, eid) == before


@pytest.mark.parametrize("route", ["v3", "v2"])
def test_a_json_submit_may_not_hold_a_blob_reference(http, parked, raw, route):
    """A reference only names a frame of its own body: a JSON body naming a
    blob (someone else's input, on a shared endpoint) is refused."""
    eid, _, fid = parked
    other = _blob_keys(raw, eid)
    name = binary.ref_name("bb\n" + (next(iter(other)).decode().rsplit(":", 1)[1] if other
                                     else uuid.uuid4().hex))
    payload = _payload(f"bb\n{name}", FuncXSerializer().serialize({}))
    if route == "v3":
        resp = http.post(f"{http.base_url}/v3/endpoints/{eid}/submit",
                         json={"tasks": {fid: [payload]}}, timeout=30)
    else:
        resp = http.post(f"{http.base_url}/v2/submit", json={"tasks": [[fid, eid, payload]]},
                         timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == error_codes.FRAMES_INVALID


def test_a_frame_over_the_payload_limit_is_refused_413_and_stores_nothing(http, parked, raw):
    eid, _, fid = parked
    frame = binary.dumps((b"z" * (1024 * 1024 + 10),))  # the session's limit is 1 MiB
    before = _blob_keys(raw, eid)
    resp = _post_frames(http, eid, {"tasks": {fid: [_payload("bb\n0")]}}, [frame])
    assert resp.status_code == 413, resp.text
    assert resp.json()["code"] == error_codes.TASK_PAYLOAD_TOO_LARGE
    assert _blob_keys(raw, eid) == before


def test_a_submit_refused_by_the_quota_script_deletes_the_blobs_it_stored(redis_client, raw,
                                                                           monkeypatch):
    """A submit refused after its blobs were written (over the stored-bytes
    quota, which counts the frames) leaves none behind."""
    from live import Server, another_user, service_redis_url

    from backend.app import create_app

    monkeypatch.setenv("FUNCX_QUOTA_STORED_BYTES", str(len(BIG) // 2))
    srv = Server(create_app(service_redis_url()))
    try:
        client = another_user(redis_client, "blobquota", funcx_service_address=srv.url)
        eid = client.register_endpoint(f"blobquota-{uuid.uuid4().hex[:6]}")["endpoint_id"]
        fid = client.register_function(double)
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {client.web_client.token}"
        before = _blob_keys(raw, eid)
        resp = s.post(f"{srv.url}/v3/endpoints/{eid}/submit", timeout=30,
                      data=frames.encode({"tasks": {fid: [_payload("bb\n0")]}},
                                         [binary.dumps((BIG,))]),
                      headers={"Content-Type": frames.MEDIA_TYPE})
        assert resp.status_code == 429, resp.text
        assert resp.json()["code"] == error_codes.QUOTA_STORED_BYTES
        assert _blob_keys(raw, eid) == before == set()
        assert raw.xlen(keys.ep_tasks(eid)) == 0
    finally:
        srv.close()


def _submit_one(http, eid: str, fid: str) -> tuple[str, str]:
    tg = str(uuid.uuid4())
    resp = http.post(f"{http.base_url}/v3/endpoints/{eid}/submit", timeout=30,
                     json={"tasks": {fid: [FuncXSerializer().serialize_payload((1,), {})]},
                           "task_group_id": tg})
    assert resp.status_code == 200, resp.text
    return tg, resp.json()["tasks"][fid][0]


def _report(agent_url: str, eid: str, results: list[Result], blobs: dict[str, bytes]) -> None:
    """Write blobs and a results entry as the endpoint's agent does."""
    agent = redis.Redis.from_url(agent_url)
    try:
        with agent.pipeline(transaction=True) as p:
            for tid, data in blobs.items():
                p.set(keys.ep_blob(eid, tid), data, ex=3600)
            p.xadd(keys.ep_results(eid), encode_results(results))
            p.execute()
    finally:
        agent.close()


def test_a_blob_result_is_moved_out_of_reach_and_shown_as_text_on_the_public_routes(
        http, parked, raw, redis_client, fxc):
    eid, agent_url, fid = parked
    tg, tid = _submit_one(http, eid, fid)
    value = {"answer": list(range(30_000))}
    blob = binary.dumps(value)
    _report(agent_url, eid, [Result(tid, "success", data=binary.ref(tid),
                                    completion_t=repr(time.time()))], {tid: blob})
    _await_event(http, tg, tid)
    # the ingester renamed it out of the endpoint's prefix; the record holds its size
    assert not raw.exists(keys.ep_blob(eid, tid))
    assert raw.get(keys.task_blob(tid)) == blob
    assert redis_client.hget(keys.task(tid), "result") == binary.ref(str(binary.size(blob)))
    assert len(raw.xrange(keys.ep_results(eid))) == 0  # applied and deleted

    text = binary.to_text(blob)
    doc = http.get(f"{http.base_url}/v2/tasks/{tid}", timeout=30).json()
    assert doc["status"] == "success" and doc["result"] == text  # the public wire format
    assert FuncXSerializer().deserialize(doc["result"]) == value
    assert fxc.get_result(tid) == value
    batch = http.post(f"{http.base_url}/v2/batch_status", json={"task_ids": [tid]},
                      timeout=30).json()
    assert batch["results"][tid]["result"] == text
    events = http.get(f"{http.base_url}/v2/taskgroup/{tg}/events", params={"after": "0"},
                      timeout=30).json()
    assert [d["result"] for d in events["tasks"] if d["task_id"] == tid] == [text]
    # the first fetch shortened the record's expiry; the blob follows it
    assert 0 < raw.ttl(keys.task_blob(tid)) <= 24 * 3600

    # the funcX SDK's way: references, and the bytes from the result route
    ref = http.get(f"{http.base_url}/v2/tasks/{tid}", params={"blobs": "1"}, timeout=30).json()
    assert ref["result"] == binary.ref(str(binary.size(blob)))
    events = http.get(f"{http.base_url}/v2/taskgroup/{tg}/events",
                      params={"after": "0", "blobs": "1"}, timeout=30).json()
    assert [d["result"] for d in events["tasks"] if d["task_id"] == tid] == [ref["result"]]
    got = http.get(f"{http.base_url}/v3/tasks/{tid}/result", timeout=30)
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/octet-stream"
    assert got.content == blob and binary.loads(got.content) == value


def test_the_result_route_is_404_for_another_users_task_and_for_a_text_result(
        http, parked, redis_client):
    from live import another_user

    eid, agent_url, fid = parked
    tg, tid = _submit_one(http, eid, fid)
    _report(agent_url, eid, [Result(tid, "success", data=binary.ref(tid),
                                    completion_t=repr(time.time()))], {tid: binary.dumps(7)})
    _await_event(http, tg, tid)
    other = another_user(redis_client, "blobpeek")
    resp = requests.get(f"{http.base_url}/v3/tasks/{tid}/result", timeout=30,
                        headers={"Authorization": f"Bearer {other.web_client.token}"})
    assert resp.status_code == 404 and resp.json()["code"] == error_codes.TASK_NOT_FOUND
    tg2, plain = _submit_one(http, eid, fid)
    _report(agent_url, eid, [Result(plain, "success", data=FuncXSerializer().serialize(8),
                                    completion_t=repr(time.time()))], {})
    _await_event(http, tg2, plain)
    resp = http.get(f"{http.base_url}/v3/tasks/{plain}/result", timeout=30)
    assert resp.status_code == 404 and resp.json()["code"] == error_codes.TASK_NOT_FOUND
    assert http.get(f"{http.base_url}/v2/tasks/{plain}", timeout=30).json()["result"] == \
        FuncXSerializer().serialize(8)


def test_a_forged_result_reference_fails_its_task_with_result_blob_missing_only(
        http, parked, raw, fxc):
    """An endpoint's result naming a blob it did not write (none at all, or
    another task's name) fails that task alone with RESULT_BLOB_MISSING; the
    other results of the same entry are applied."""
    eid, agent_url, fid = parked
    tg, nothing = _submit_one(http, eid, fid)
    _, stolen = _submit_one(http, eid, fid)
    _, fine = _submit_one(http, eid, fid)
    victim_tg, victim = _submit_one(http, eid, fid)  # holds a real blob result
    blob = binary.dumps("victim's")
    _report(agent_url, eid, [Result(victim, "success", data=binary.ref(victim),
                                    completion_t=repr(time.time()))], {victim: blob})
    _await_event(http, victim_tg, victim)
    now = repr(time.time())
    _report(agent_url, eid, [
        Result(nothing, "success", data=binary.ref(nothing), completion_t=now),
        Result(stolen, "success", data=binary.ref(victim), completion_t=now),
        Result(fine, "success", data=FuncXSerializer().serialize(5), completion_t=now),
    ], {})
    _await_event(http, tg, nothing)
    got = http.post(f"{http.base_url}/v2/batch_status", timeout=30,
                    json={"task_ids": [nothing, stolen, fine, victim]}).json()["results"]
    for tid in (nothing, stolen):
        assert got[tid]["status"] == "failed", got[tid]
        assert error_codes.RESULT_BLOB_MISSING in got[tid]["exception"]
    assert got[fine]["status"] == "success" and FuncXSerializer().deserialize(
        got[fine]["result"]) == 5
    assert raw.get(keys.task_blob(victim)) == blob  # untouched
    assert got[victim]["result"] == binary.to_text(blob)


def test_a_blob_result_over_the_result_limit_fails_and_is_deleted(parked, raw, redis_client,
                                                                   http):
    """settle() (the ingester's call) measures a blob result by its size."""
    from backend.store import blobs

    eid, agent_url, fid = parked
    _, tid = _submit_one(http, eid, fid)
    agent = redis.Redis.from_url(agent_url)
    agent.set(keys.ep_blob(eid, tid), binary.dumps(b"x" * 5000), ex=600)
    agent.close()
    out = blobs.settle(redis_client, eid, [Result(tid, "success", data=binary.ref(tid))], 1000)
    assert out[0].status == "failed" and "MaxResultSizeExceeded" in out[0].data
    assert not raw.exists(keys.ep_blob(eid, tid)) and not raw.exists(keys.task_blob(tid))


def test_another_endpoints_blob_result_for_a_task_is_not_taken(parked, raw, redis_client, http,
                                                                fxc):
    """A result in endpoint B's stream for endpoint A's task never moves B's
    blob over A's task: the blob is dropped and the result refused as foreign."""
    from backend.store import blobs

    eid, _, fid = parked
    _, tid = _submit_one(http, eid, fid)
    reg = fxc.register_endpoint(f"blobs-other-{uuid.uuid4().hex[:6]}")
    try:
        other = reg["endpoint_id"]
        agent = redis.Redis.from_url(reg["redis_url"])
        agent.set(keys.ep_blob(other, tid), binary.dumps("forged"), ex=600)
        agent.close()
        out = blobs.settle(redis_client, other, [Result(tid, "success", data=binary.ref(tid))],
                           10**6)
        assert out[0].data == binary.ref(tid)  # left for the results script to refuse
        assert not raw.exists(keys.task_blob(tid)) and not raw.exists(keys.ep_blob(other, tid))
    finally:
        fxc.delete_endpoint(reg["endpoint_id"])


def test_a_settled_blob_expires_with_its_record(parked, raw, redis_client, http):
    """settle() gives the moved blob the record's remaining time (so it goes
    when the record does), and the first fetch shortens both alike."""
    from backend.store import blobs

    eid, agent_url, fid = parked
    _, tid = _submit_one(http, eid, fid)
    agent = redis.Redis.from_url(agent_url)
    blob = binary.dumps(b"y" * 100_000)
    agent.set(keys.ep_blob(eid, tid), blob, ex=60)  # its own expiry, shorter
    agent.close()
    out = blobs.settle(redis_client, eid, [Result(tid, "success", data=binary.ref(tid))], 10**6)
    assert out[0].status == "success" and out[0].data == binary.ref(str(binary.size(blob)))
    record_ms, blob_ms = raw.pttl(keys.task(tid)), raw.pttl(keys.task_blob(tid))
    assert record_ms > 3600 * 1000 and abs(record_ms - blob_ms) < 5000


def test_mangled_frames_bodies_never_get_a_5xx(http, parked):
    """Truncations and flipped bytes of a valid frames body: each is
    answered (200 when still well-formed, 400/413 naming the problem), never 5xx."""
    import random

    eid, _, fid = parked
    good = frames.encode({"tasks": {fid: [_payload("bb\n0", "bb\n1")]}},
                         [binary.dumps((b"a" * 70_000,)), binary.dumps({"k": b"b" * 70_000})])
    rng = random.Random(20)
    seen = set()
    for i in range(60):
        body = bytearray(good)
        if i % 2:
            body = body[:rng.randrange(len(body))]
        else:  # flip bytes where the structure is: the magic, lengths, the header
            for _ in range(rng.randint(1, 4)):
                body[rng.randrange(min(len(body), 400))] = rng.randrange(256)
        resp = http.post(f"{http.base_url}/v3/endpoints/{eid}/submit", data=bytes(body),
                         headers={"Content-Type": frames.MEDIA_TYPE}, timeout=30)
        assert resp.status_code < 500, (i, resp.status_code, resp.text[:300])
        if resp.status_code >= 400:
            assert resp.json()["code"] in (error_codes.FRAMES_INVALID, error_codes.BAD_REQUEST,
                                           error_codes.TASK_PAYLOAD_TOO_LARGE,
                                           error_codes.FUNCTION_NOT_FOUND), resp.text
        seen.add(resp.status_code)
    assert 400 in seen


def test_a_frames_body_sent_chunked_or_in_small_pieces_arrives_whole(http, parked, raw):
    """The body is read in large steps when its length is known, and by
    werkzeug's reader when it is chunked; both give the bytes as sent."""
    eid, _, fid = parked
    frame = binary.dumps((BIG,))
    kwargs = FuncXSerializer().serialize({})
    header = {"tasks": {fid: [_payload("bb\n0", kwargs)]}, "task_group_id": str(uuid.uuid4())}
    body = frames.encode(header, [frame])
    url = f"{http.base_url}/v3/endpoints/{eid}/submit"
    pieces = [body[i:i + 4093] for i in range(0, len(body), 4093)]
    for data in (iter(pieces), body):  # a generator: Transfer-Encoding chunked
        resp = http.post(url, data=data, headers={"Content-Type": frames.MEDIA_TYPE}, timeout=60)
        assert resp.status_code == 200, resp.text
        task = _stream_task(raw, eid, resp.json()["tasks"][fid][0])
        assert raw.get(keys.ep_blob(eid, binary.ref_name(unpack_buffers(task.payload)[0]))) \
            == frame


def _stream_task(raw, eid: str, tid: str):
    for _, fields in reversed(raw.xrange(keys.ep_tasks(eid))):
        for t in decode_task_entry({k.decode(): v.decode() for k, v in fields.items()}):
            if t.task_id == tid:
                return t
    raise AssertionError(f"task {tid} not in the stream")


def test_a_frames_body_cut_short_is_a_400_and_stores_nothing(http, parked, raw, token):
    import socket
    from urllib.parse import urlsplit

    eid, _, fid = parked
    frame = binary.dumps((BIG,))
    header = {"tasks": {fid: [_payload("bb\n0", FuncXSerializer().serialize({}))]}}
    body = frames.encode(header, [frame])
    before = _blob_keys(raw, eid)
    u = urlsplit(http.base_url)
    with socket.create_connection((u.hostname, u.port), timeout=60) as s:
        s.sendall((f"POST /v3/endpoints/{eid}/submit HTTP/1.1\r\nHost: {u.netloc}\r\n"
                   f"Authorization: Bearer {token}\r\nContent-Type: {frames.MEDIA_TYPE}\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
                  + body[:len(body) // 2])
        s.shutdown(socket.SHUT_WR)  # the client goes away half way through
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status = answer.split(b"\r\n", 1)[0]
    assert b" 400 " in status, answer[:300]  # werkzeug's ClientDisconnected
    assert _blob_keys(raw, eid) == before
