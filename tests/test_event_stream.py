"""Results pushed over one streamed request (server-sent events): the events
route streams when asked, every answer arrives on that one request, the
stream ends and frees its long-poll slot however it ends, refusals keep their
codes, and FuncXExecutor completes task after task over one stream."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from funcx import FuncXExecutor
from funcx.errors import BadRequest, FuncxAPIError, NotFound
from funcx.protocol import error_codes, keys
from funcx.protocol.events import EventsAnswer, messages
from funcx.sdk.event_stream import EventStream, decode_answer
from funcx.sdk.web_client import WebClient


def double(x):
    return 2 * x


def _until(cond, timeout: float = 30.0) -> bool:
    """Whether ``cond()`` (a fact in another process: the service's Redis)
    became true within ``timeout``, checked every 50 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


# ------------------------------------------------------------------ parsing
def test_messages_are_whole_however_the_bytes_are_split():
    raw = b": open\n\ndata: {\"a\": 1}\n\n: idle\n\ndata: x\ndata: y\n\n"
    for cut in range(1, len(raw)):
        got = list(messages(iter([raw[:cut], raw[cut:]])))
        assert got == [None, b'{"a": 1}', None, b"x\ny"], cut
    assert list(messages(iter([raw[i:i + 1] for i in range(len(raw))]))) == \
        [None, b'{"a": 1}', None, b"x\ny"]


def test_a_malformed_answer_is_refused_with_its_code():
    assert decode_answer(b'{"last_id": "1-0", "tasks": []}') == EventsAnswer("1-0", [])
    for bad in (b"not json", b'{"tasks": []}', b'{"last_id": 5, "tasks": []}',
                b'{"last_id": "1-0", "tasks": "x"}'):
        with pytest.raises(FuncxAPIError) as ei:
            decode_answer(bad)
        assert ei.value.code == error_codes.BAD_RESPONSE


# ---------------------------------------------------------- the real service
@pytest.fixture
def web(service, token):
    w = WebClient(service, token)
    yield w
    w.close()


@pytest.fixture
def idle_group(redis_client, service):
    """(a WebClient of a new user, that user's id, a task group of theirs with
    one task queued to an endpoint that never runs): a group with no events to
    come, whose user's long-poll slots only the test's streams take."""
    from live import another_user

    client = another_user(redis_client, "stream")
    fid = client.register_function(double)
    eid = client.register_endpoint(f"stream-idle-{uuid.uuid4().hex[:8]}")["endpoint_id"]
    tg = str(uuid.uuid4())
    client.submit_tasks(eid, [(fid, client.fx_serializer.serialize_payload((1,), {}))],
                        task_group_id=tg)
    w = WebClient(service, client._token)
    yield w, client.whoami()["user_id"], tg
    w.close()
    client.delete_endpoint(eid)


def _polls(redis_client, user: str) -> int:
    from backend.store.longpolls import open_polls

    return open_polls(redis_client, user)


def test_every_answer_arrives_on_one_request(fxc, endpoint, web):
    fid = fxc.register_function(double)
    tg = str(uuid.uuid4())
    first = fxc.submit_tasks(endpoint, [(fid, fxc.fx_serializer.serialize_payload((1,), {}))],
                             task_group_id=tg)
    stream = EventStream(web, f"/v2/taskgroup/{tg}/events", {"after": "0", "timeout": 30}, 40)
    seen: list[str] = []
    sent = [first[0]]
    requests = web.request_count
    for answer in stream:  # opening it is the one request
        if answer is None:
            continue
        seen += [d["task_id"] for d in answer.tasks]
        assert all(d["status"] == "success" for d in answer.tasks)
        if len(sent) < 5:  # the next task only once the last one's result came
            sent += fxc.submit_tasks(
                endpoint, [(fid, fxc.fx_serializer.serialize_payload((len(sent),), {}))],
                task_group_id=tg)
        elif set(seen) >= set(sent):
            stream.close()
    assert seen == sent  # each once, in the order they completed (one at a time)
    assert web.request_count == requests + 1  # no request after the stream was opened


def test_a_stream_ends_at_its_timeout_with_a_heartbeat_and_frees_its_slot(
        idle_group, redis_client):
    web, user, tg = idle_group
    started = time.monotonic()
    got = list(EventStream(web, f"/v2/taskgroup/{tg}/events", {"after": "0", "timeout": 1}, 30))
    # the queued task's group has no event: the opening comment, the heartbeat of
    # the one quiet slice, then the stream's end
    assert got[-1] is None and all(a is None for a in got)
    assert time.monotonic() - started >= 1.0
    assert _until(lambda: _polls(redis_client, user) == 0)


@pytest.mark.slow  # waits for a heartbeat slice to notice the client left (~4 s): the slow CI step
def test_a_client_that_stops_listening_frees_the_slot(idle_group, redis_client):
    web, user, tg = idle_group
    stream = EventStream(web, f"/v2/taskgroup/{tg}/events", {"after": "0", "timeout": 30}, 40)
    opened, ended = threading.Event(), threading.Event()

    def listen():
        for _ in stream:
            opened.set()
        ended.set()

    threading.Thread(target=listen, daemon=True).start()
    assert opened.wait(30)  # the stream's first bytes came
    assert _polls(redis_client, user) == 1
    stream.close()
    assert ended.wait(5)  # the read in progress ended at once
    # the service notices at its next heartbeat write (within XREAD_SLICE_MS)
    assert _until(lambda: _polls(redis_client, user) == 0)


def test_an_immediate_answer_is_plain_json_and_the_stream_is_that_answer(idle_group):
    web, _, tg = idle_group
    for params in ({"after": "$"}, {"after": "0", "timeout": 0}):
        got = list(EventStream(web, f"/v2/taskgroup/{tg}/events", params, 30))
        assert len(got) == 1 and isinstance(got[0], EventsAnswer) and got[0].tasks == []


def test_stream_refusals_keep_their_codes(idle_group, redis_client):
    from funcx.defaults import setting

    web, user, tg = idle_group
    with pytest.raises(NotFound) as ei:
        list(EventStream(web, f"/v2/taskgroup/{uuid.uuid4()}/events",
                         {"after": "0", "timeout": 5}, 30))
    assert ei.value.code == error_codes.TASK_GROUP_NOT_FOUND
    with pytest.raises(BadRequest) as ei:
        list(EventStream(web, f"/v2/taskgroup/{tg}/events", {"after": "x", "timeout": 5}, 30))
    assert ei.value.code == error_codes.BAD_REQUEST
    slots = keys.longpolls(user)
    fake = [f"held-by-stream-test-{i}" for i in range(int(setting("LONGPOLL_PER_IDENTITY")))]
    redis_client.zadd(slots, {f: time.time() + 300 for f in fake})
    try:
        with pytest.raises(FuncxAPIError) as ei:
            list(EventStream(web, f"/v2/taskgroup/{tg}/events",
                             {"after": "0", "timeout": 5}, 30))
        assert ei.value.http_status == 429 and ei.value.code == error_codes.LONGPOLL_LIMIT
        assert ei.value.retry_after is not None
    finally:
        redis_client.zrem(slots, *fake)


def test_executor_completes_task_after_task_over_one_stream(fxc, endpoint):
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:
        assert ex.submit(double, 0).result(timeout=60) == 0
        before = ex._watch_web.request_count
        assert [ex.submit(double, i).result(timeout=60) for i in range(30)] == \
            [2 * i for i in range(30)]
        # one stream carried the 30 results (a reopen each LONGPOLL_S at most)
        assert ex._watch_web.request_count - before <= 2
        stream = ex._stream
    # shut down with nothing left to watch: its stream was closed
    assert stream is not None and stream.closed


def test_executor_with_the_stream_off_long_polls_once_per_answer(fxc, endpoint, monkeypatch):
    """FUNCX_EXECUTOR_EVENT_STREAM=0: the watcher asks for plain JSON answers,
    a long-poll per answer (what the service answers a client that does not
    ask for a stream), and every result still arrives."""
    monkeypatch.setenv("FUNCX_EXECUTOR_EVENT_STREAM", "0")
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:
        assert ex.submit(double, 0).result(timeout=60) == 0
        before = ex._watch_web.request_count
        assert [ex.submit(double, i).result(timeout=60) for i in range(5)] == \
            [2 * i for i in range(5)]
        assert ex._watch_web.request_count - before >= 5  # one request per answer
