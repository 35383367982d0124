"""The binary path end to end (issue 20): numpy arrays as arguments and
results through FuncXExecutor, on a service of its own (a redis-server the
test starts, ``funcx service start`` with FUNCX_MAX_PAYLOAD_BYTES and
FUNCX_MAX_RESULT_BYTES raised to 128 MiB) and a real endpoint with 2
workers.  The arrays cross every hop as raw bytes: the task stream entry and
the results entry hold references only, the blobs hold the raw pickle (no
base64 anywhere), and the public JSON routes still answer the exact text
form a public SDK decodes."""
from __future__ import annotations

import codecs
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dill
import pytest
import redis
import requests

from funcx.protocol import error_codes, keys
from funcx.protocol.messages import Result
from funcx.protocol.streams import decode_task_entry, encode_results
from funcx.serialize import binary, frames
from funcx.serialize.buffers import unpack_buffers

np = pytest.importorskip("numpy")
MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]
EP = "blobs-e2e"


def doubled(a):
    return a * 2


def nbytes(a):
    return int(a.nbytes)


def public_sdk_decode(item: str):
    """How the public SDKs (globus-compute-sdk, funcx 1.0) read a ``00`` item."""
    assert item.startswith("00\n")
    return dill.loads(codecs.decode(item[3:].encode(), "base64"))


@dataclass
class Fabric:
    url: str  # the service
    token: str
    r: redis.Redis  # the service's Redis, bytes
    env: dict

    def client(self, token: str | None = None):
        from funcx import FuncXClient

        c = FuncXClient(self.url, access_token=token or self.token)
        c.throttling_enabled = False
        return c

    def run(self, code: str) -> str:
        p = subprocess.run([sys.executable, "-c", code], env=self.env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stdout.strip()


def _redis_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    from backend.embedded import free_port, redis_server_binary

    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", str(tmp), "--save", "",
                             "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"redis://:{password}@127.0.0.1:{port}/0"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory) -> Iterator[Fabric]:
    tmp = tmp_path_factory.mktemp("blobs-e2e")
    proc, rurl = _redis_server(tmp)
    r = redis.Redis.from_url(rurl)
    for _ in range(400):  # it starts in milliseconds; answering is the event we have
        try:
            r.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None, "redis-server exited"
            threading.Event().wait(0.025)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
    env.update({"FUNCX_HOME": str(tmp / "home"), "FUNCX_REDIS_URL": rurl,
                "FUNCX_MAX_PAYLOAD_BYTES": str(128 * MiB),
                "FUNCX_MAX_RESULT_BYTES": str(128 * MiB),
                "FUNCX_HEARTBEAT_PERIOD_S": "0.5", "FUNCX_HEARTBEAT_THRESHOLD_S": "3"})
    service = [sys.executable, "-m", "funcx_cli.main", "service"]
    p = subprocess.run([*service, "start", "--detach", "--port", "0"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    token = json.loads((tmp / "home" / "credentials" / "token.json").read_text())["token"]
    fab = Fabric(p.stdout.strip(), token, r, env)
    try:
        yield fab
    finally:
        try:
            fab.run(f"from endpoint import daemon; daemon.stop({EP!r})")
        finally:
            subprocess.run([*service, "stop"], env=env, cwd=ROOT, capture_output=True,
                           timeout=120)
            proc.terminate()
            proc.wait(10)


@pytest.fixture(scope="module")
def endpoint(fabric) -> str:
    """A real endpoint (2 workers) of the fabric's service; its id."""
    return fabric.run(
        "from endpoint import daemon; from endpoint.config_file import write_template; "
        "from endpoint.paths import EndpointDir; "
        f"ep = EndpointDir({EP!r}); write_template(ep.config_file, {EP!r}, workers=2); "
        f"print(daemon.start({EP!r}))").splitlines()[-1]


class Monitor:
    """Redis MONITOR in a thread: the size of every XADD and SET's values."""

    def __init__(self, url_client: redis.Redis):
        self.r = redis.Redis(connection_pool=url_client.connection_pool)
        self.seen: list[tuple[str, str, int]] = []  # (command, key, bytes of its arguments)
        self._mon = self.r.monitor().__enter__()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        try:
            for cmd in self._mon.listen():
                words = cmd["command"].split(" ", 2)
                if words[0].upper() in ("XADD", "SET") and len(words) > 1:
                    self.seen.append((words[0].upper(), words[1].strip('"'), len(cmd["command"])))
        except Exception:  # noqa: BLE001 - the connection closed: done
            return

    def close(self) -> None:
        try:
            self._mon.connection.disconnect()
        finally:
            self._t.join(10)


def _entries_of(mon: Monitor, command: str, key_part: str) -> list[int]:
    return [n for c, k, n in mon.seen if c == command and key_part in k]


@pytest.mark.parametrize("mib", [1, 20])
def test_a_numpy_argument_and_result_cross_every_hop_as_bytes(fabric, endpoint, mib):
    from funcx import FuncXExecutor

    arr = np.arange(mib * MiB // 8, dtype=np.float64)
    client = fabric.client()
    mon = Monitor(fabric.r) if mib == 1 else None  # MONITOR echoes every byte: small only
    try:
        with FuncXExecutor(endpoint_id=endpoint, client=client) as ex:
            fut = ex.submit(doubled, arr)
            out = fut.result(timeout=180)
    finally:
        if mon is not None:
            mon.close()
    assert isinstance(out, np.ndarray) and np.array_equal(out, arr * 2)
    tid = fut.task_id
    # the service holds the result as the raw pickle, the record only its size
    blob = fabric.r.get(keys.task_blob(tid))
    assert blob is not None and binary.loads(blob).tobytes() == (arr * 2).tobytes()
    assert fabric.r.hget(keys.task(tid), "result") == binary.ref(str(binary.size(blob))).encode()
    assert not fabric.r.exists(keys.ep_blob(endpoint, tid))  # moved out of the endpoint's reach
    assert fabric.r.hget(keys.task(tid), "payload_bytes") and \
        int(fabric.r.hget(keys.task(tid), "payload_bytes")) >= arr.nbytes  # quota counts it
    if mon is not None:
        # the task entry and the results entry are small: references, no base64
        tasks_adds = _entries_of(mon, "XADD", keys.ep_tasks(endpoint))
        results_adds = _entries_of(mon, "XADD", keys.ep_results(endpoint))
        assert tasks_adds and results_adds
        assert max(tasks_adds + results_adds) < 16 * 1024, (tasks_adds, results_adds)
        # each blob went once each way as raw bytes (MONITOR escapes them: >= their size)
        assert len(_entries_of(mon, "SET", ":blob:")) == 2
    # the public JSON route: the exact text form, which a public SDK decodes
    doc = requests.get(f"{fabric.url}/v2/tasks/{tid}", timeout=120,
                       headers={"Authorization": f"Bearer {fabric.token}"}).json()
    assert doc["status"] == "success" and doc["result"] == binary.to_text(blob)
    assert np.array_equal(public_sdk_decode(doc["result"]), arr * 2)


def test_funcx_client_runs_a_large_argument_and_reads_the_result_as_json_text(fabric, endpoint):
    """FuncXClient's own path: Batch / run send the frames body; get_result
    reads the public JSON text of a blob result."""
    client = fabric.client()
    fid = client.register_function(doubled)
    arr = np.arange(MiB // 8, dtype=np.float32)
    batch = client.create_batch()
    batch.add(arr, endpoint_id=endpoint, function_id=fid)
    batch.add(3, endpoint_id=endpoint, function_id=fid)
    big, small = client.batch_run(batch)
    done = client.wait([big, small], timeout=120)
    assert done[big]["status"] == "success", done[big]
    assert np.array_equal(client.get_result(big), arr * 2) and client.get_result(small) == 6
    assert fabric.r.exists(keys.task_blob(big)) and not fabric.r.exists(keys.task_blob(small))


def test_the_input_waits_in_redis_as_raw_bytes_behind_a_small_entry(fabric):
    """Submitted to an endpoint that is not running: the queued entry holds a
    reference, the blob the raw pickle (its array bytes verbatim)."""
    from funcx import FuncXExecutor

    client = fabric.client()
    eid = client.register_endpoint(f"parked-{uuid.uuid4().hex[:6]}")["endpoint_id"]
    arr = np.full(MiB // 8, 7.0)
    with FuncXExecutor(endpoint_id=eid, client=client) as ex:
        fut = ex.submit(doubled, arr)
        assert fut.submitted.wait(60)
        (entry_id, fields), = fabric.r.xrange(keys.ep_tasks(eid))
        assert sum(len(v) for v in fields.values()) < 4096
        task, = decode_task_entry({k.decode(): v.decode() for k, v in fields.items()})
        ref = unpack_buffers(task.payload)[0]
        blob = fabric.r.get(keys.ep_blob(eid, binary.ref_name(ref)))
        assert arr.tobytes() in blob  # raw, not base64
        assert binary.loads(blob)[0].tobytes() == arr.tobytes()
        fut.cancel()
    client.delete_endpoint(eid)


def test_a_hostile_frames_body_is_refused_while_another_tenants_tasks_complete(fabric, endpoint):
    from funcx import FuncXExecutor

    client = fabric.client()
    arr = np.ones(MiB // 8)
    fid = client.register_function(nbytes)
    hostile = [frames.encode({"tasks": {fid: ["4\nbb\n0", "4\nbb\n0"]}}, [binary.dumps(arr)]),
               b"FXF1\n99999999999\n{}", frames.encode({"tasks": {fid: ["4\nbb\n1"]}},
                                                       [binary.dumps(arr)])]
    answers: list[requests.Response] = []
    from backend.store import users

    plain = redis.Redis(connection_pool=redis.ConnectionPool(
        **{**fabric.r.connection_pool.connection_kwargs, "decode_responses": True}))
    mallory = users.issue_token(plain, users.create_user(plain, f"mallory-{uuid.uuid4().hex[:6]}"))
    plain.close()

    def attack() -> None:  # another tenant, at the same endpoint
        for body in hostile * 5:
            answers.append(requests.post(
                f"{fabric.url}/v3/endpoints/{endpoint}/submit", data=body, timeout=60,
                headers={"Authorization": f"Bearer {mallory}",
                         "Content-Type": frames.MEDIA_TYPE}))

    t = threading.Thread(target=attack)
    t.start()
    with FuncXExecutor(endpoint_id=endpoint, client=client) as ex:
        futs = [ex.submit(nbytes, arr * i) for i in range(6)]
        assert [f.result(timeout=180) for f in futs] == [arr.nbytes] * 6
    t.join(120)
    assert len(answers) == 15
    assert {(a.status_code, a.json()["code"]) for a in answers} == \
        {(400, error_codes.FRAMES_INVALID)}


def test_a_forged_result_reference_fails_only_that_task(fabric):
    """An endpoint that reports a result blob it never wrote (or another
    task's) fails that task with RESULT_BLOB_MISSING; its genuine blob result
    and a plain one reach the executor."""
    from funcx import FuncXExecutor

    client = fabric.client()
    reg = client.register_endpoint(f"forger-{uuid.uuid4().hex[:6]}")
    eid = reg["endpoint_id"]
    agent = redis.Redis.from_url(reg["redis_url"])
    try:
        with FuncXExecutor(endpoint_id=eid, client=client) as ex:
            futs = [ex.submit(doubled, i) for i in range(4)]
            tids = [f.task_id for f in futs if f.submitted.wait(60)]
            assert len(tids) == 4
            genuine = binary.dumps(np.arange(100_000))
            now = repr(time.time())
            with agent.pipeline(transaction=True) as p:
                p.set(keys.ep_blob(eid, tids[0]), genuine, ex=600)
                p.xadd(keys.ep_results(eid), encode_results([
                    Result(tids[0], "success", data=binary.ref(tids[0]), completion_t=now),
                    Result(tids[1], "success", data=binary.ref(tids[1]), completion_t=now),
                    Result(tids[2], "success", data=binary.ref(tids[0]), completion_t=now),
                    Result(tids[3], "success", data=binary.to_text(binary.dumps(6)),
                           completion_t=now)]))
                p.execute()
            assert np.array_equal(futs[0].result(timeout=60), np.arange(100_000))
            for f in futs[1:3]:
                with pytest.raises(Exception, match=error_codes.RESULT_BLOB_MISSING):
                    f.result(timeout=60)
            assert futs[3].result(timeout=60) == 6
    finally:
        agent.close()
        client.delete_endpoint(eid)


@pytest.mark.slow  # 100 MiB through every hop (~6 s with teardown): the slow CI step
def test_a_100_mib_input_fits_when_the_payload_limit_is_128_mib(fabric, endpoint):
    from funcx import FuncXExecutor

    arr = np.zeros(100 * MiB // 8)
    with FuncXExecutor(endpoint_id=endpoint, client=fabric.client()) as ex:
        assert ex.submit(nbytes, arr).result(timeout=300) == arr.nbytes
