"""Load: 20 concurrent clients each submitting 1,000 no-op tasks (requests of
100) while 20 more poll ``batch_status`` for random known task ids, for a
bounded time, on the fault suite's own service and endpoint.

Reports p50/p99 request latency per kind, the error count (no answer other
than 2xx/4xx is allowed) and the service's memory before and after.  The
fabric's per-identity limits are raised or off (FUNCX_RATE_LIMIT_READ/WRITE/TASKS,
FUNCX_SUBMIT_CONCURRENCY_PER_IDENTITY) so that the test measures the service, not
its fair-share throttles: all 40 threads share one identity, which the default
limits would (rightly) answer with 429.
"""
from __future__ import annotations

import os
import random
import threading
import time
import uuid

import pytest
from faultlib import noop, record_load

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(240)]

CLIENTS = int(os.environ.get("FUNCX_LOAD_CLIENTS", "20"))
POLLERS = int(os.environ.get("FUNCX_LOAD_POLLERS", "20"))
TASKS_PER_CLIENT = int(os.environ.get("FUNCX_LOAD_TASKS", "1000"))
BATCH = 100
BOUND_S = float(os.environ.get("FUNCX_LOAD_BOUND_S", "90"))
LIMITS = {"FUNCX_RATE_LIMIT_READ": "10000000 per minute",
          "FUNCX_RATE_LIMIT_WRITE": "10000000 per minute",
          "FUNCX_RATE_LIMIT_TASKS": "off", "FUNCX_SUBMIT_CONCURRENCY_PER_IDENTITY": "0"}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"submit": [], "status": []}
        self.status: dict[int, int] = {}
        self.errors: list[str] = []

    def add(self, kind: str, seconds: float, status: int | None, error: str | None = None):
        with self.lock:
            self.latency[kind].append(seconds)
            if status is not None:
                self.status[status] = self.status.get(status, 0) + 1
            if error is not None:
                self.errors.append(error)


def call(stats: Stats, kind: str, fn):
    """One request, timed; an answer other than 2xx/4xx (or none) is an error."""
    from funcx.errors import FuncxAPIError, ServiceUnreachable

    t0 = time.perf_counter()
    try:
        out = fn()
    except FuncxAPIError as e:
        dt = time.perf_counter() - t0
        stats.add(kind, dt, e.http_status, None if e.http_status < 500 else f"{kind}: {e}")
        return None
    except ServiceUnreachable as e:
        stats.add(kind, time.perf_counter() - t0, None, f"{kind}: {e}")
        return None
    stats.add(kind, time.perf_counter() - t0, 200)
    return out


def test_load_concurrent_submit_and_poll(make_fabric):
    from funcx.sdk.web_client import WebClient
    from funcx.serialize import FuncXSerializer

    fab = make_fabric(env=LIMITS)
    fxc = fab.client()
    fid = fxc.register_function(noop)
    tg = str(uuid.uuid4())
    ser = FuncXSerializer()
    warm = fxc.map_run(range(20), endpoint_id=fab.eid, function_id=fid)
    fxc.wait(warm, timeout=60)
    rss_before = fab.service_rss_mib()

    stats = Stats()
    known: list[str] = []
    stop = threading.Event()
    t_start = time.monotonic()
    deadline = t_start + BOUND_S

    def submitter(c: int) -> None:
        web = WebClient(fab.url, fab.token)  # its own connections, no retries: errors show
        for b in range(TASKS_PER_CLIENT // BATCH):
            if time.monotonic() > deadline:
                return
            payloads = [ser.serialize_payload((c * TASKS_PER_CLIENT + b * BATCH + k,), {})
                        for k in range(BATCH)]
            resp = call(stats, "submit", lambda payloads=payloads, tg=tg: web.post(
                f"/v3/endpoints/{fab.eid}/submit",
                {"tasks": {fid: payloads}, "task_group_id": tg, "create_queue": True}))
            if resp:
                known.extend(resp["tasks"][fid])

    def poller(p: int) -> None:
        web = WebClient(fab.url, fab.token)
        rng = random.Random(p)
        pause = threading.Event()
        while not stop.is_set() and time.monotonic() < deadline:
            if not known:
                pause.wait(0.01)
                continue
            ids = [known[rng.randrange(len(known))] for _ in range(20)]
            call(stats, "status", lambda ids=ids: web.post("/v2/batch_status", {"task_ids": ids}))

    subs = [threading.Thread(target=submitter, args=(c,)) for c in range(CLIENTS)]
    polls = [threading.Thread(target=poller, args=(p,)) for p in range(POLLERS)]
    for t in subs + polls:
        t.start()
    for t in subs:
        t.join(max(1.0, deadline - time.monotonic()) + 30)
    submit_s = time.monotonic() - t_start
    expected = CLIENTS * TASKS_PER_CLIENT
    # the pollers keep polling while the results come in; wait (pushed events) for all
    from funcx.errors import TaskPending

    try:
        fxc.wait(list(known), timeout=max(1.0, deadline - time.monotonic()))
        all_done = True
    except TaskPending:
        all_done = False
    total_s = time.monotonic() - t_start
    stop.set()
    for t in polls:
        t.join(30)
    r = fab.redis()
    succeeded = sum(1 for s in _statuses(r, known) if s == "success")
    rss_after = fab.service_rss_mib()
    row = {
        "clients": CLIENTS, "pollers": POLLERS, "tasks": expected, "submitted": len(known),
        "completed": succeeded, "submit_phase_s": round(submit_s, 1), "total_s": round(total_s, 1),
        "tasks_per_s": round(succeeded / total_s, 1),
        "submit_requests": len(stats.latency["submit"]),
        "status_requests": len(stats.latency["status"]),
        "submit_p50_ms": round(pct(stats.latency["submit"], 0.50) * 1000, 1),
        "submit_p99_ms": round(pct(stats.latency["submit"], 0.99) * 1000, 1),
        "status_p50_ms": round(pct(stats.latency["status"], 0.50) * 1000, 1),
        "status_p99_ms": round(pct(stats.latency["status"], 0.99) * 1000, 1),
        "errors": len(stats.errors), "http_statuses": stats.status,
        "rss_before": rss_before, "rss_after": rss_after,
        "rate_limits": "raised to 10,000,000/min (all threads share one identity)",
    }
    record_load(row)
    assert not stats.errors, stats.errors[:10]
    assert len(known) == expected, f"{len(known)} of {expected} tasks submitted within {BOUND_S}s"
    assert all_done and succeeded == expected, f"{succeeded} of {expected} done within {BOUND_S}s"


def _statuses(r, tids):
    with r.pipeline(transaction=False) as p:
        for t in tids:
            p.hget(f"fx:task:{t}", "status")
        return p.execute()
