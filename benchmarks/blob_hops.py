"""Measure the endpoint side of large arguments and results (issue 20, goal 1):
CPU seconds per task of the agent's threads, the manager and worker
processes, and redis-server, and the latency from queueing a task to its
result in the results stream — for the text path (base64 in the task and
results entries) or the binary path (blobs).

Not a test (pytest does not collect it).  It drives the code on its
``PYTHONPATH``, so running it from a worktree of an older commit measures the
old code::

    FUNCX_HOME=$(mktemp -d) .venv/bin/python -m benchmarks.blob_hops --mode blob
    git worktree add /tmp/old 2b8059f && cd /tmp/old && FUNCX_HOME=$(mktemp -d) \\
        PYTHONPATH=/tmp/old /work/main/.venv/bin/python -m benchmarks.blob_hops --mode text

The task is ``echo(array)``: an argument of the size goes in, a result of the
size comes back.  Tasks run one at a time (warm-up first); the driver's own
work (serializing, queueing, reading results) is not counted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

os.environ.setdefault("FUNCX_MAX_RESULT_BYTES", str(512 * 1024 * 1024))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402

MIB = 1024 * 1024


def echo(x):
    return x


def start_redis(d: str):
    from benchmarks.harness import private_redis

    return private_redis(d)

def cpu_of(redis_pid: int, port: int) -> dict[str, float]:
    """CPU seconds so far: this process but its main thread (the driver) —
    the agent's threads and the interchange —, its child processes (the
    manager and its worker), and redis-server."""
    me = psutil.Process()
    main_id = threading.main_thread().native_id
    managers = {p.pid for p in psutil.process_iter(["cmdline"])
                if "endpoint.manager" in " ".join(p.info["cmdline"] or [])
                and f":{port}" in " ".join(p.info["cmdline"] or [])}
    agent_cpu = sum(t.user_time + t.system_time for t in me.threads() if t.id != main_id)
    kids = 0.0
    for p in psutil.process_iter(["cmdline"]):  # Parsl detaches the block's processes
        try:
            line = " ".join(p.info["cmdline"] or [])
            if f":{port}" in line or p.ppid() in managers:
                c = p.cpu_times()
                kids += c.user + c.system
        except psutil.Error:
            pass
    rc = psutil.Process(redis_pid).cpu_times()
    return {"agent": agent_cpu, "manager+worker": kids, "redis": rc.user + rc.system}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["text", "blob"], required=True)
    ap.add_argument("--sizes", default="1,10,100")
    ap.add_argument("--n", type=int, default=5)
    args = ap.parse_args()

    from parsl.providers import LocalProvider

    from backend.store import endpoints, functions, quotas, users
    from backend.store.tasks import TaskStore
    from endpoint.agent import Agent
    from endpoint.config import Config
    from funcx.protocol import keys
    from funcx.protocol.streams import decode_result_entry
    from funcx.serialize import FuncXSerializer, pack_buffers

    ser = FuncXSerializer()
    d = tempfile.mkdtemp()
    proc, url = start_redis(d)
    r = redis.Redis.from_url(url, decode_responses=True)
    rb = redis.Redis.from_url(url)
    uid = users.create_user(r, "m")
    code = ser.serialize_function(echo)
    fid = functions.register(r, uid, function_name="echo", function_code=code)
    info = endpoints.register(r, uid, url, name="m")
    eid = info["endpoint_id"]
    config = Config(provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
                    max_workers_per_node=1)
    agent = Agent("m", config, None, Path(tempfile.mkdtemp()), eid, info)  # type: ignore[arg-type]
    agent.start()
    deadline = time.monotonic() + 60
    while not agent.interchange.managers and time.monotonic() < deadline:
        time.sleep(0.1)
    stream, last = keys.ep_results(eid), "$"
    store = TaskStore(r)

    def payload_for(a: np.ndarray) -> str:
        if args.mode == "text":
            return ser.serialize_payload((a,), {})
        from funcx.serialize import binary

        bid = uuid.uuid4().hex
        rb.set(keys.ep_blob(eid, bid), binary.dumps((a,)), ex=3600)
        return pack_buffers([binary.ref(bid), ser.serialize({})])

    def one(payload: str) -> float:
        nonlocal last
        t0 = time.perf_counter()
        (tid,) = store.submit_batches(uid, str(uuid.uuid4()),
                                      [quotas.Batch(eid, [(fid, payload)], {fid: code})])
        while True:
            res = r.xread({stream: last}, block=30_000)
            assert res, "no result in 30 s"
            for entry_id, fields in res[0][1]:
                last = entry_id
                for item in decode_result_entry(fields):
                    if getattr(item, "task_id", None) == tid and hasattr(item, "data"):
                        assert item.status == "success", item.data[:2000]
                        return time.perf_counter() - t0

    print(f"mode={args.mode} python={sys.executable} code={os.getcwd()}")
    print(f"{'MiB':>5} {'p50 ms':>8} {'agent ms':>9} {'mgr+wkr ms':>10} {'redis ms':>9} "
          "(CPU per task)")
    for mib in [float(s) for s in args.sizes.split(",")]:
        a = np.random.default_rng(0).random(int(mib * MIB) // 8)
        one(payload_for(a))  # warm-up
        payloads = [payload_for(a) for _ in range(args.n)]
        before = cpu_of(proc.pid, agent.interchange.port)
        lat = [one(p) for p in payloads]
        after = cpu_of(proc.pid, agent.interchange.port)
        cpu = {k: (after[k] - before[k]) / args.n * 1000 for k in before}
        print(f"{mib:>5g} {statistics.median(lat) * 1000:>8.1f} {cpu['agent']:>9.1f} "
              f"{cpu['manager+worker']:>10.1f} {cpu['redis']:>9.1f}", flush=True)
    agent.stop()
    proc.terminate()


if __name__ == "__main__":
    main()
