"""CPU cost per task of the service's hot paths, for measuring optimisations
(not a test: pytest does not collect it).

Over N no-op tasks on a private real redis-server it measures, each as this
process's CPU time (``time.process_time``) and redis-server's (psutil), with
Redis's own time per command (INFO commandstats):

* submit: the v3 submit route in the Flask app (what a web worker does), the
  task store and the SUBMIT script, ``--batch`` tasks per request;
* ingest: the ingester's apply path (read, decode, APPLY_RESULTS, ack),
  results written as an agent writes them, ``--entry`` per stream entry;
* fetch: the results read back through ``/v2/batch_status`` (a web worker's
  other share of a task).

    python -m benchmarks.service_cpu [--tasks 20000] [--batch 1000] [--entry 200] [--profile]

To compare two versions in one run, point PYTHONPATH at each in turn (e.g. a
``git archive`` of the old commit's backend/ and funcx/).
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time

import psutil


def _redis(d: str):
    from benchmarks.harness import private_redis

    return private_redis(d)

def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return t.user + t.system


def _stats(r) -> str:
    """Redis's own time (µs) by command since the last call (then reset)."""
    info = r.info("commandstats")
    r.config_resetstat()
    rows = sorted(((v["usec"], k.removeprefix("cmdstat_")) for k, v in info.items()), reverse=True)
    return ", ".join(f"{name} {usec}" for usec, name in rows[:4])


class Meter:
    """CPU of this process and of redis-server over a phase, per task."""

    def __init__(self, rproc: psutil.Process, r, profile: bool):
        self.rproc, self.r = rproc, r
        self.prof = cProfile.Profile() if profile else None

    def __enter__(self) -> Meter:
        _stats(self.r)
        self.c0, self.r0, self.w0 = time.process_time(), _cpu(self.rproc), time.perf_counter()
        if self.prof:
            self.prof.enable()
        return self

    def __exit__(self, *exc) -> None:
        if self.prof:
            self.prof.disable()
        self.cpu = time.process_time() - self.c0
        self.redis = _cpu(self.rproc) - self.r0
        self.wall = time.perf_counter() - self.w0

    def report(self, what: str, n: int, who: str) -> None:
        print(f"{what:<7}: {n} tasks, {who} CPU {1e6 * self.cpu / n:6.1f} us/task, redis CPU "
              f"{1e6 * self.redis / n:6.1f} us/task, wall {n / self.wall:8.0f} tasks/s")
        print(f"         redis usec by command: {_stats(self.r)} (over {n} tasks)")
        if self.prof:
            pstats.Stats(self.prof).sort_stats(os.environ.get("SORT", "cumulative")).print_stats(30)


def run(a: argparse.Namespace, url: str, rproc: psutil.Process) -> None:
    import redis

    from backend.app import create_app
    from backend.ingester import Ingester
    from backend.redis_conn import connect
    from backend.store import endpoints, functions, users
    from funcx.protocol.messages import Result
    from funcx.protocol.streams import encode_results

    r = connect(url)
    uid = users.create_user(r, "bench")
    token = users.issue_token(r, uid)
    fid = functions.register(r, uid, function_name="f", function_code="00\ncode")
    reg = endpoints.register(r, uid, url, name="ep")
    eid = reg["endpoint_id"]
    client = create_app(url).test_client()
    hdr = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    payload = "00\ngASVBQAAAAAAAABLAUsChpQu\n"
    body = json.dumps({"tasks": {fid: [payload] * a.batch}}).encode()

    def submit() -> list[str]:
        resp = client.post(f"/v3/endpoints/{eid}/submit", data=body, headers=hdr)
        assert resp.status_code == 200, resp.get_json()
        return list(resp.get_json()["tasks"][fid])

    tids = submit()  # warm up: scripts loaded, imports done
    n = a.tasks // a.batch * a.batch
    with Meter(rproc, r, a.profile) as m:
        for _ in range(a.tasks // a.batch):
            tids += submit()
    m.report("submit", n, "web")
    # the results, written as an agent writes them (its own credentials)
    agent = redis.Redis.from_url(reg["redis_url"])
    ing = Ingester(connect(url))
    ing.run_once()  # streams, groups, leases
    now = repr(time.time())
    stream = f"fx:ep:{eid}:results"
    with agent.pipeline(transaction=False) as p:
        for i in range(0, len(tids), a.entry):
            p.xadd(stream, encode_results([Result(t, "success", data=payload, completion_t=now)
                                           for t in tids[i:i + a.entry]]))
        p.execute()
    with Meter(rproc, r, a.profile) as m:
        while ing.applied < len(tids):
            ing.run_once()
    assert r.xlen(stream) == 0
    m.report("ingest", len(tids), "ingester")
    with Meter(rproc, r, a.profile) as m:
        for i in range(0, len(tids), a.batch):
            resp = client.post("/v2/batch_status", json={"task_ids": tids[i:i + a.batch]},
                               headers=hdr)
            assert resp.status_code == 200, resp.get_json()
    m.report("fetch", len(tids), "web")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=1000, help="tasks per submit request")
    ap.add_argument("--entry", type=int, default=200, help="results per results-stream entry")
    ap.add_argument("--profile", action="store_true", help="cProfile each phase (SORT=tottime)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="svc-cpu-")
    os.environ["FUNCX_HOME"] = tmp
    os.environ["FUNCX_RATE_LIMIT_ENABLED"] = "0"
    proc, url = _redis(tmp)
    os.environ["FUNCX_REDIS_URL"] = url
    try:
        run(a, url, psutil.Process(proc.pid))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
