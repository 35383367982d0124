"""The scientist's side of the cross-host tests, run on the emulated laptop
(``python -m tests.crosshost.laptop COMMAND ...``).  It uses the SDK as a
scientist would and prints one JSON line per event on stdout, which the test
reads to know when to cut a link.

The service address, CA bundle and token come from the environment and the
laptop's FUNCX_HOME, exactly as on a real laptop after ``funcx login``.
"""
from __future__ import annotations

import json
import sys
import time

from funcx import FuncXClient, FuncXExecutor
from funcx.errors import FuncxError

#: appears in :func:`work`'s code, so in the serialized function the SDK sends
SOURCE_MARKER = "fx-source-marker-e1b7c4d2a9f03b"


def work(i, marker, runs_dir, sleep_s):
    """Count this execution in a file per task, sleep, return something
    derived from the argument (so the result carries it too)."""
    import os
    import time

    with open(os.path.join(runs_dir, str(i)), "a") as f:
        f.write("x")
    time.sleep(sleep_s)
    return [i * 2, marker[::-1], "fx-source-marker-e1b7c4d2a9f03b"[:2]]


def emit(event: str, **kw) -> None:
    print(json.dumps({"event": event, **kw}), flush=True)


def expected(i: int, marker: str) -> list:
    return [i * 2, marker[::-1], "fx"]


def check(fxc: FuncXClient, ids: list[str], marker: str) -> dict:
    return check_offset(fxc, ids, marker, 0)


def check_offset(fxc: FuncXClient, ids: list[str], marker: str, offset: int) -> dict:
    """Wait for ``ids`` (task ``offset + k`` is ``ids[k]``) and compare each result."""
    docs = fxc.wait(ids, timeout=600)
    wrong = []
    for i, tid in enumerate(ids, start=offset):
        doc = docs[tid]
        if doc.get("status") != "success" or doc.get("result") != expected(i, marker):
            wrong.append({"i": i, "status": doc.get("status"),
                          "reason": str(doc.get("exception", ""))[:300]})
    return {"ok": len(ids) - len(wrong), "wrong": wrong[:10], "n_wrong": len(wrong)}


def basic(eid: str, marker: str, runs_dir: str) -> None:
    """Register, run one task, then the executor."""
    fxc = FuncXClient()
    fid = fxc.register_function(work, description="cross-host test function")
    tid = fxc.run(0, marker, runs_dir, 0.0, endpoint_id=eid, function_id=fid)
    one = check(fxc, [tid], marker)
    with FuncXExecutor(endpoint_id=eid, funcx_client=fxc) as ex:
        futs = [ex.submit(work, 1000 + i, marker, runs_dir, 0.0) for i in range(5)]
        got = [f.result(timeout=300) for f in futs]
    emit("basic", run=one, executor=got == [expected(1000 + i, marker) for i in range(5)],
         function_id=fid)


def batch(eid: str, n: int, sleep_s: float, marker: str, runs_dir: str, offset: int) -> None:
    """Submit ``n`` tasks in one batch; report progress until all are done."""
    fxc = FuncXClient()
    fid = fxc.register_function(work)
    b = fxc.create_batch()
    for i in range(n):
        b.add(offset + i, marker, runs_dir, sleep_s, endpoint_id=eid, function_id=fid)
    ids = fxc.batch_run(b)
    emit("submitted", n=len(ids))
    done, last = 0, -1
    while done < n:
        try:
            docs = fxc.get_batch_result(ids)
            done = sum(not d["pending"] for d in docs.values())
        except FuncxError as e:  # the link is cut: keep asking, as a scientist would
            emit("unreachable", error=type(e).__name__)
            time.sleep(1)
            continue
        if done != last:
            emit("progress", done=done)
            last = done
        time.sleep(0.3)
    emit("done", **check_offset(fxc, ids, marker, offset))


def two_services(eid: str, url_a: str, url_b: str, n: int, marker: str, runs_dir: str) -> None:
    """Submit ``n`` tasks through each service host and read each half back
    through the other one."""
    a, b = FuncXClient(funcx_service_address=url_a), FuncXClient(funcx_service_address=url_b)
    fid = a.register_function(work)
    halves = []
    for k, (client, reader) in enumerate(((a, b), (b, a))):
        batch_ = client.create_batch()
        for i in range(n):
            batch_.add(k * n + i, marker, runs_dir, 0.0, endpoint_id=eid, function_id=fid)
        halves.append((client.batch_run(batch_), reader, k * n))
    out = []
    for ids, reader, offset in halves:
        docs = reader.wait(ids, timeout=600)
        ok = sum(docs[t].get("result") == expected(offset + i, marker) for i, t in enumerate(ids))
        out.append(ok)
    emit("two_services", ok=out, used=[a.funcx_service_address, b.funcx_service_address],
         requests=[a.web_client.request_count, b.web_client.request_count])


def main(argv: list[str]) -> None:
    cmd, *rest = argv
    if cmd == "basic":
        basic(*rest)
    elif cmd == "batch":
        eid, n, sleep_s, marker, runs_dir, offset = rest
        batch(eid, int(n), float(sleep_s), marker, runs_dir, int(offset))
    elif cmd == "two-services":
        eid, url_a, url_b, n, marker, runs_dir = rest
        two_services(eid, url_a, url_b, int(n), marker, runs_dir)
    else:
        raise SystemExit(f"unknown command {cmd!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
