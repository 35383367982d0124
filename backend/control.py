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
from funcx.defaults import setting


class StartFailed(RuntimeError):
    pass


def version_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        return requests.get(f"{url}/v2/version", timeout=timeout).ok
    except requests.RequestException:
        return False


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return "(no log)"


def start_detached(host: str | None = None, port: int | None = None, timeout: float = 60.0) -> str:
    """Start the supervisor in the background; return its URL once
    ``GET /v2/version`` answers."""
    rec = running_record()
    if rec is not None:
        raise AlreadyRunning(f"the funcX service is already running at {rec.get('url')}")
    host = host or str(setting("SERVICE_HOST"))
    port = int(setting("SERVICE_PORT")) if port is None else port
    port = port or free_port(host)
    log = logs_dir() / "supervisor.log"
    with open_log(log) as out:
        proc = subprocess.Popen([sys.executable, "-m", "backend.supervisor", "--host", host,
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while not version_ok(url, timeout=0.5):
        if proc.poll() is not None:
            raise StartFailed(f"the service exited with status {proc.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            proc.terminate()
            raise StartFailed(f"the service did not answer within {timeout}s:\n{_tail(log)}")
        time.sleep(0.05)
    return url


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


def status() -> dict:
    rec = running_record()
    if rec is None:
        return {"running": False, "url": None}
    return {"running": True, "url": rec.get("url"), "pid": rec.get("pid"),
            "responding": bool(rec.get("url")) and version_ok(rec["url"]),
            "embedded_redis": rec.get("embedded_redis"), "logs": str(logs_dir())}
