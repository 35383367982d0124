"""A/B of the binary path, whole fabric (not a test; run by hand):

    .venv/bin/python -m benchmarks.blob_path 1,10,100

CPU per task of this client process (time.process_time) and of every fabric
process (psutil cpu_times deltas: gunicorn web workers, ingester,
redis-server, the endpoint daemon (agent, interchange), its manager and
worker), for a numpy argument of the given MiB -> its double as the result,
through FuncXExecutor.  The old path (FUNCX_BLOB_MIN_BYTES = 2**50 in the
client and in one endpoint's environment: base64 in JSON at every hop) and
the new one run on the same service, two endpoints, in 3 interleaved rounds;
medians are printed.  Wall-clock latency is printed too, but on a shared
machine it is noise."""
from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import redis

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
OFF = str(2 ** 50)


def doubled(a):
    return a * 2


def fabric_procs(home: str, redis_pid: int) -> list[psutil.Process]:
    out = [psutil.Process(redis_pid)]
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "backend.supervisor" in cmd or "endpoint.daemon" in cmd:
            try:
                if p.environ().get("FUNCX_HOME") == home:
                    out += [p, *p.children(recursive=True)]
            except psutil.Error:
                pass
    return out


def cpu(procs) -> dict[int, float]:
    got = {}
    for p in procs:
        try:
            t = p.cpu_times()
            got[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return got


#: what each fabric process is called in the per-process line (first match)
TAGS = ("redis-server", "gunicorn", "ingester", "endpoint.manager", "endpoint.worker",
        "endpoint.daemon", "backend.supervisor", "rq")


def per_process(procs, f0: dict, f1: dict, n: int) -> dict[str, float]:
    """CPU ms per task of each kind of fabric process."""
    by: dict[str, float] = {}
    for pr in procs:
        if pr.pid not in f1:
            continue
        try:
            cmd = " ".join(pr.cmdline())
        except psutil.Error:
            continue
        tag = next((t for t in TAGS if t in cmd), cmd[:40])
        by[tag] = by.get(tag, 0) + (f1[pr.pid] - f0.get(pr.pid, 0)) / n
    return {k: round(v * 1e3, 1) for k, v in sorted(by.items(), key=lambda x: -x[1]) if v}


def main() -> None:
    from backend.embedded import free_port, redis_server_binary

    tmp = Path(tempfile.mkdtemp(prefix="blobs-ab-"))
    home = str(tmp / "home")
    password, port = secrets.token_urlsafe(16), free_port()
    rproc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                              "--requirepass", password, "--dir", str(tmp), "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    rurl = f"redis://:{password}@127.0.0.1:{port}/0"
    r = redis.Redis.from_url(rurl)
    while True:
        try:
            r.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
    env.update({"FUNCX_HOME": home, "FUNCX_REDIS_URL": rurl,
                "FUNCX_MAX_PAYLOAD_BYTES": str(256 * MiB), "FUNCX_MAX_RESULT_BYTES": str(256 * MiB),
                "FUNCX_RATE_LIMIT_TASKS": "off", "FUNCX_RATE_LIMIT_READ": "1000000 per minute",
                "FUNCX_RATE_LIMIT_WRITE": "1000000 per minute"})
    svc = [sys.executable, "-m", "funcx_cli.main", "service"]
    url = subprocess.run([*svc, "start", "--detach", "--port", "0"], env=env, cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()
    token = json.loads(Path(home, "credentials", "token.json").read_text())["token"]
    eids = {}
    for name, extra in (("new", {}), ("old", {"FUNCX_BLOB_MIN_BYTES": OFF})):
        code = ("from endpoint import daemon; from endpoint.config_file import write_template; "
                "from endpoint.paths import EndpointDir; "
                f"ep = EndpointDir({name!r}); write_template(ep.config_file, {name!r}, workers=1); "
                f"print(daemon.start({name!r}))")
        eids[name] = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, cwd=ROOT,
                                    capture_output=True, text=True,
                                    check=True).stdout.strip().splitlines()[-1]
    os.environ.update({k: v for k, v in env.items() if k != "FUNCX_HOME"})
    from funcx import FuncXClient, FuncXExecutor

    client = FuncXClient(url, access_token=token)
    client.throttling_enabled = False
    procs = fabric_procs(home, rproc.pid)
    print("fabric processes:", len(procs), file=sys.stderr)
    sizes = [float(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "1,10").split(",")]
    n_by = {1: 20, 10: 6, 100: 2}
    rows = {}
    try:
        for mib in sizes:
            arr = np.arange(int(mib * MiB) // 8, dtype=np.float64)
            n = n_by.get(mib, 20)
            acc = {m: {"fabric": [], "client": [], "lat": []} for m in ("old", "new")}
            for rnd in range(3):
                for mode in ("old", "new"):
                    if mode == "old":
                        os.environ["FUNCX_BLOB_MIN_BYTES"] = OFF
                    else:
                        os.environ.pop("FUNCX_BLOB_MIN_BYTES", None)
                    with FuncXExecutor(endpoint_id=eids[mode], client=client) as ex:
                        assert np.array_equal(ex.submit(doubled, arr).result(300), arr * 2)
                        c0, f0 = time.process_time(), cpu(procs)
                        for _ in range(n):
                            t = time.perf_counter()
                            out = ex.submit(doubled, arr).result(300)
                            acc[mode]["lat"].append(time.perf_counter() - t)
                        c1, f1 = time.process_time(), cpu(procs)
                    assert np.array_equal(out, arr * 2)
                    acc[mode]["client"].append((c1 - c0) / n)
                    acc[mode]["fabric"].append(sum(f1[k] - f0.get(k, 0) for k in f1) / n)
                    if rnd == 2:
                        print(f"   {mib} MiB {mode} per process (ms/task):",
                              per_process(procs, f0, f1, n), flush=True)
            rows[mib] = acc
            for mode in ("old", "new"):
                a = acc[mode]
                print(f"{mib:>4} MiB {mode}: client CPU/task {statistics.median(a['client'])*1e3:8.1f} ms"
                      f"  fabric CPU/task {statistics.median(a['fabric'])*1e3:8.1f} ms"
                      f"  round trip p50 {statistics.median(a['lat'])*1e3:8.1f} ms (wall, noisy)",
                      flush=True)
    finally:
        for name in eids:
            subprocess.run([sys.executable, "-c", f"from endpoint import daemon; daemon.stop({name!r})"],
                           env=env, cwd=ROOT, capture_output=True)
        subprocess.run([*svc, "stop"], env=env, cwd=ROOT, capture_output=True)
        rproc.terminate()
        rproc.wait(10)


if __name__ == "__main__":
    main()
