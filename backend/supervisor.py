"""``funcx service``: run and supervise the service's processes.

One supervisor process per ``$FUNCX_HOME`` starts the embedded redis-server
(unless ``FUNCX_REDIS_URL`` names another), gunicorn serving the Flask app,
the result ingester and an RQ worker; it restarts any that dies and stops
them all on SIGTERM.  Logs go to ``$FUNCX_HOME/service/logs/``.
"""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from funcx.defaults import setting
from funcx.home import read_json, service_dir, service_record_path, write_private_json

if TYPE_CHECKING:
    from backend.embedded import EmbeddedRedis

log = logging.getLogger("funcx.service")


class AlreadyRunning(RuntimeError):
    pass


def logs_dir() -> Path:
    d = service_dir() / "logs"
    d.mkdir(exist_ok=True, mode=0o700)
    return d


def _private_fd(path: Path) -> int:
    """``path`` opened for appending (created if missing), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # also a file created before, with a wider mode
    return fd


def open_log(path: Path):
    """``path`` opened for appending (binary, unbuffered), readable by the
    service's user only: logs may name users, endpoints and tasks."""
    return open(_private_fd(path), "ab", buffering=0)


def lock_path() -> Path:
    return service_dir() / "supervisor.lock"


def running_record() -> dict | None:
    """The running service's record, or None if no supervisor holds the lock."""
    path = lock_path()
    if not path.exists():
        return None
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return read_json(service_record_path()) or {"url": None}
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started: float = 0.0
    env: dict = field(default_factory=dict)

    def start(self) -> None:
        out = open_log(self.log)
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **self.env})
        out.close()
        self.started = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Supervisor:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.stopping = threading.Event()
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self._lock_file: IO[str] | None = None

    def _take_lock(self) -> None:
        self._lock_file = lock = open(_private_fd(lock_path()), "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            rec = read_json(service_record_path()) or {}
            raise AlreadyRunning(f"the funcX service is already running at {rec.get('url')}") from None

    def _redis_url(self) -> str:
        external = str(setting("REDIS_URL"))
        if external:
            return external
        from backend.embedded import EmbeddedRedis

        self.redis = embedded = EmbeddedRedis(service_dir() / "redis", logs_dir() / "redis.log")
        embedded.start()
        log.info("embedded redis-server on 127.0.0.1:%d", embedded.port)
        return embedded.url

    def start(self) -> None:
        url = self._redis_url()
        from backend.bootstrap import ensure_local_credentials
        from backend.redis_conn import connect

        ensure_local_credentials(connect(url), self.url)
        env = {"FUNCX_REDIS_URL": url}
        py = sys.executable
        workers, threads = int(setting("WEB_WORKERS")), int(setting("WEB_THREADS"))
        self.children = [
            Child("web", [py, "-m", "gunicorn", "-k", "gthread", "-w", str(workers),
                          "--threads", str(threads), "-b", f"{self.host}:{self.port}",
                          "--keep-alive", "30", "--graceful-timeout", "5",
                          "--log-level", "warning", "backend.wsgi:app"],
                  logs_dir() / "web.log", env=env),
            Child("ingester", [py, "-m", "backend.ingester"], logs_dir() / "ingester.log", env=env),
            *[Child(f"rq-{i}", [py, "-m", "backend.jobs"], logs_dir() / f"rq-{i}.log", env=env)
              for i in range(int(setting("RQ_WORKERS")))],
        ]
        for c in self.children:
            c.start()
        write_private_json(service_record_path(), {
            "url": self.url, "host": self.host, "port": self.port, "pid": os.getpid(),
            "started_at": time.time(), "embedded_redis": self.redis is not None,
        })

    def supervise(self) -> None:
        """Restart children that die, until asked to stop."""
        while not self.stopping.wait(0.5):
            if self.redis and self.redis.proc and self.redis.proc.poll() is not None:
                log.warning("redis-server exited (%s); restarting", self.redis.proc.returncode)
                self.redis.start()
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None and not self.stopping.is_set():
                    log.warning("%s exited with %s; restarting", c.name, c.proc.returncode)
                    c.restarts += 1
                    if time.monotonic() - c.started < 2:  # crash loop: slow down
                        self.stopping.wait(min(2 ** min(c.restarts, 5), 30))
                    c.start()

    def shutdown(self) -> None:
        self.stopping.set()
        for c in self.children:  # signal all first, then wait: stops in parallel
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        for c in self.children:
            c.stop()
        if self.redis and self.redis.proc and self.redis.proc.poll() is None:
            self.redis.proc.terminate()  # redis flushes the AOF on SIGTERM
            self.redis.proc.wait(15)
        try:
            service_record_path().unlink()
        except FileNotFoundError:
            pass
        log.info("service stopped")


def run(host: str, port: int) -> None:
    """Run the service in the foreground until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    sup = Supervisor(host, port)
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
    sup._take_lock()  # raises AlreadyRunning before anything is touched
    try:
        sup.start()
        log.info("funcX service at %s", sup.url)
        sup.supervise()
    finally:
        sup.shutdown()


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="run the funcX service supervisor")
    ap.add_argument("--host", default=str(setting("SERVICE_HOST")))
    ap.add_argument("--port", type=int, default=int(setting("SERVICE_PORT")))
    a = ap.parse_args()
    try:
        run(a.host, a.port)
    except AlreadyRunning as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
