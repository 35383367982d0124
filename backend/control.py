"""Start (detached), stop and inspect the service of this ``$FUNCX_HOME``;
the logic behind ``funcx service start|stop|status|logs``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from backend.embedded import free_port
from backend.supervisor import AlreadyRunning, logs_dir, open_log, running_record
from backend.tls import Plan, TransportRefused, plan, resolve_tls, verify_arg
from funcx.defaults import setting
from funcx.home import read_json, service_record_path
from funcx.lifecycle import ProcessRecord


class StartFailed(RuntimeError):
    pass


def version_ok(url: str, timeout: float = 1.0, ca: str | None = None) -> bool:
    """Whether ``url`` answers /v2/version (over https, verified against ``ca``
    or the system store)."""
    try:
        return requests.get(f"{url}/v2/version", timeout=timeout, verify=verify_arg(ca)).ok
    except requests.RequestException:
        return False


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def _failure(rec: dict | None, proc: subprocess.Popen, log: Path) -> str:
    """What to tell the user when the supervisor did not become ready: the
    component that failed, its log and the log's tail."""
    failed = (rec or {}).get("failed") if (rec or {}).get("pid") == proc.pid else None
    if failed:
        where = failed.get("log")
        msg = f"{failed.get('component')} failed to start: {failed.get('error')}"
        if where:
            msg += f"\nlog: {where}\n{_tail(Path(where))}"
        return msg + f"\n(supervisor log: {log})"
    return f"the supervisor exited with status {proc.returncode}; log: {log}\n{_tail(log)}"


def start_detached(host: str | None = None, port: int | None = None, timeout: float = 90.0,
                   transport: Plan | None = None) -> str:
    """Start the supervisor in the background; return its URL once the
    supervisor *itself* reports every component ready (its record, written by
    that very process, says ``ready``), not when something answers the port.
    Otherwise raise :class:`StartFailed` naming the component and its log.
    ``transport`` (:func:`backend.tls.plan`, made by the caller so a refusal
    comes before anything starts) says which certificate to serve."""
    rec = running_record()
    if rec is not None:
        raise AlreadyRunning(f"the funcX service is already running at {rec.get('url')}")
    host = host or str(setting("SERVICE_HOST"))
    port = int(setting("SERVICE_PORT")) if port is None else port
    if transport is None:  # planned here, so a refusal comes before anything starts
        try:
            transport = plan(host, resolve_tls())
        except TransportRefused as e:
            raise StartFailed(str(e)) from None
    port = port or free_port(host)
    argv = [sys.executable, "-m", "backend.supervisor", "--host", host, "--port", str(port)]
    if transport.tls is not None:
        argv += ["--tls-cert", str(transport.tls.cert), "--tls-key", str(transport.tls.key)]
        if transport.tls.ca is not None:
            argv += ["--tls-ca", str(transport.tls.ca)]
    if transport.warning:
        argv.append("--insecure")
    log = logs_dir() / "supervisor.log"
    with open_log(log) as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        rec = read_json(service_record_path())
        mine = rec is not None and rec.get("pid") == proc.pid
        if mine and rec is not None and rec.get("ready"):
            return str(rec["url"])
        if proc.poll() is not None:
            raise StartFailed(_failure(read_json(service_record_path()), proc, log))
        if time.monotonic() > deadline:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise StartFailed(_failure(read_json(service_record_path()), proc, log)
                              + f"\n(the service was not ready within {timeout}s)")
        time.sleep(0.05)


def stop(timeout: float = 30.0) -> bool:
    """Stop the running service; False if none was running."""
    rec = running_record()
    if rec is None:
        return False
    pid = rec.get("pid")
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while running_record() is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the service (pid {pid}) did not stop within {timeout}s")
        time.sleep(0.05)
    return True


def components(rec: dict) -> list[dict]:
    """Each component of a running service: name, pid, alive, uptime, restarts, log."""
    out = []
    now = time.time()
    for name, c in (rec.get("components") or {}).items():
        pr = ProcessRecord.from_dict(c)
        alive = pr is not None and pr.process() is not None
        out.append({"name": name, "pid": c.get("pid"), "alive": alive if pr else None,
                    "uptime_s": round(now - pr.started, 1) if pr and alive else None,
                    "restarts": c.get("restarts", 0), "log": c.get("log"),
                    **({"external": True} if c.get("external") else {})})
    return out


def status() -> dict:
    rec = running_record()
    if rec is None:
        return {"running": False, "url": None, "components": []}
    return {"running": True, "url": rec.get("url"), "pid": rec.get("pid"),
            "ready": bool(rec.get("ready")),
            "responding": bool(rec.get("url")) and version_ok(rec["url"], ca=rec.get("tls_ca")),
            "tls": bool(rec.get("tls")), "tls_ca": rec.get("tls_ca"),
            "insecure": bool(rec.get("insecure")), "agent_redis_url": rec.get("agent_redis_url"),
            "embedded_redis": rec.get("embedded_redis"), "logs": str(logs_dir()),
            "components": components(rec)}
