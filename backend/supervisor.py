"""``funcx service``: run and supervise the service's processes.

One supervisor process per ``$FUNCX_HOME`` starts the embedded redis-server
(unless ``FUNCX_REDIS_URL`` names another), gunicorn serving the Flask app
(``WEB_WORKERS`` processes), the result ingesters (``INGESTERS``: ``ingester``,
``ingester-1``...; sizes from the cores by default, backend/sizing.py) and an
RQ worker; it restarts any that dies and stops them all on SIGTERM.  Logs go to ``$FUNCX_HOME/service/logs/``.

Transport (:mod:`backend.tls`): with a certificate gunicorn serves HTTPS and
readiness is checked over https against the CA; a non-loopback address
without one is refused unless ``--insecure`` (a WARNING on every start); an
embedded Redis off-host runs TLS-capable and its ``rediss://`` address is
passed to the web processes as ``FUNCX_REDIS_AGENT_URL``.

Its children die with it (``PR_SET_PDEATHSIG``, set from this main thread),
so even a ``kill -9`` of the supervisor leaves nothing behind.  The record
``service/service.json`` names each child by pid *and* start time, with its
restarts; a supervisor that starts ends whatever a dead predecessor's record
names that still runs, and writes ``ready: true`` only once redis answers
PING, the gunicorn master *it* started holds the port and answers
``/v2/version``, and the ingesters and RQ workers run (DESIGN decision 10).
"""
from __future__ import annotations

import contextlib
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

import psutil

from backend import sizing
from backend.tls import Plan
from funcx.defaults import setting
from funcx.home import read_json, service_dir, service_record_path, write_private_json
from funcx.lifecycle import ProcessRecord, child_preexec, end_tree

if TYPE_CHECKING:
    from backend.embedded import EmbeddedRedis

log = logging.getLogger("funcx.service")


class AlreadyRunning(RuntimeError):
    pass


class ComponentFailed(RuntimeError):
    """A component (redis, web, ingester, rq-N) could not start."""

    def __init__(self, component: str, log_path: Path | None, why: str):
        self.component, self.log_path, self.why = component, log_path, why
        super().__init__(f"{component} failed to start: {why}"
                         + (f" (log: {log_path})" if log_path else ""))


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

    record: ProcessRecord | None = None

    def start(self) -> None:
        """Start the process; it dies with the supervisor (call this from the
        supervisor's main thread: PR_SET_PDEATHSIG follows the forking thread)."""
        out = open_log(self.log)
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env={**os.environ, **self.env},
                                     preexec_fn=child_preexec())
        out.close()
        self.started = time.monotonic()
        try:
            self.record = ProcessRecord.of(self.proc.pid)
        except psutil.NoSuchProcess:
            self.record = None
        log.info("started %s (pid %d)", self.name, self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def to_dict(self) -> dict:
        return {"name": self.name, "restarts": self.restarts, "log": str(self.log),
                **(self.record.to_dict() if self.record else {"pid": None, "started": None})}

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def url_host(host: str) -> str:
    """The host part of the service's URL: a wildcard bind is reached locally
    at 127.0.0.1 (which ``tls-init``'s certificates name)."""
    from backend.tls import is_wildcard

    h = "127.0.0.1" if is_wildcard(host) else host
    return f"[{h}]" if ":" in h else h


class Supervisor:
    def __init__(self, host: str, port: int, transport: Plan | None = None):
        if not port:  # gunicorn would pick one we could not name in the URL
            from backend.embedded import free_port

            port = free_port(host)
        self.host, self.port = host, port
        self.transport = transport or Plan(host, None)
        self.url = f"{self.transport.scheme}://{url_host(host)}:{port}"
        self.agent_redis_url: str | None = None  # what endpoints are handed (no password)
        self.stopping = threading.Event()
        self.children: list[Child] = []
        self.redis: EmbeddedRedis | None = None
        self._lock_file: IO[str] | None = None
        self.ready = False

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
        from backend.embedded import EmbeddedRedis, RedisTls
        from backend.tls import bind_address

        t = self.transport
        remote = None
        if t.redis_public_host is not None:
            tls = t.tls
            remote = RedisTls(bind_address(self.host), t.redis_server,
                              tls.cert if tls else None, tls.key if tls else None)
        self.redis = embedded = EmbeddedRedis(service_dir() / "redis", logs_dir() / "redis.log",
                                              remote)
        try:
            embedded.start()
        except RuntimeError as e:
            raise ComponentFailed("redis", embedded.log_file, str(e)) from None
        if remote is not None and t.redis_public_host is not None:
            self.agent_redis_url = embedded.agent_base_url(t.redis_public_host)
            if embedded.tls_port is not None:
                log.info("embedded redis-server: TLS on %s:%d (endpoints: %s), the service's "
                         "components on %s", remote.bind, embedded.tls_port,
                         self.agent_redis_url, embedded.socket)
            else:
                log.warning("embedded redis-server: clear text on %s:%d (--insecure)",
                            remote.bind, embedded.port)
        else:
            log.info("embedded redis-server on 127.0.0.1:%d", embedded.port)
        return embedded.url

    # ------------------------------------------------------------- record
    def components(self) -> dict[str, dict]:
        """Each component's pid, start time, restarts and log, by name."""
        out: dict[str, dict] = {}
        if self.redis is not None and self.redis.proc is not None:
            rec = self.redis.record
            out["redis"] = {"name": "redis", "restarts": self.redis.restarts,
                            "log": str(self.redis.log_file),
                            **(rec.to_dict() if rec else {"pid": None, "started": None})}
        elif str(setting("REDIS_URL")):
            out["redis"] = {"name": "redis", "external": True, "pid": None, "started": None,
                            "restarts": 0, "log": None}
        for c in self.children:
            out[c.name] = c.to_dict()
        return out

    def _redis_record(self) -> dict:
        """Where the embedded Redis listens (for its admin: a second service
        host joins it at ``tls_port``); ``external`` for FUNCX_REDIS_URL."""
        e = self.redis
        if e is None:
            return {"external": True}
        return {"external": False, "port": None if e.tls_port is not None else e.port,
                "tls_port": e.tls_port, "socket": str(e.socket) if e.tls_port is not None else None,
                "bind": e.remote.bind if e.remote else "127.0.0.1"}

    def write_record(self, ready: bool, failed: dict | None = None) -> None:
        """The service record (``service.json``): what a successor must end
        if this supervisor dies, and what ``status`` and ``start`` read."""
        me = ProcessRecord.of(os.getpid())
        write_private_json(service_record_path(), {
            "url": None if failed else self.url, "host": self.host, "port": self.port,
            "pid": me.pid, "supervisor": me.to_dict(), "started_at": time.time(),
            "embedded_redis": self.redis is not None, "ready": ready,
            "tls": self.transport.tls is not None,
            "tls_ca": str(self.transport.tls.ca) if self.transport.tls and self.transport.tls.ca
            else None,
            "agent_redis_url": self.agent_redis_url, "redis": self._redis_record(),
            "insecure": self.transport.warning is not None,
            "components": self.components(), **({"failed": failed} if failed else {}),
        })

    def _write_record_safely(self) -> None:
        try:
            self.write_record(ready=self.ready)
        except OSError as e:
            log.warning("could not write the service record: %s", e)

    # --------------------------------------------------------------- start
    def start(self, timeout: float = 60.0) -> None:
        """Start every component and return once each is ready (redis answers
        PING, *our* gunicorn answers /v2/version, ingester and RQ run); raise
        :class:`ComponentFailed` naming the first that is not."""
        try:
            url = self._redis_url()
            from backend.bootstrap import ensure_local_credentials
            from backend.redis_conn import connect

            ensure_local_credentials(connect(url), self.url)
        except ComponentFailed:
            raise
        except Exception as e:  # noqa: BLE001 - whatever stops redis is redis's failure
            where = self.redis.log_file if self.redis else None
            raise ComponentFailed("redis", where, f"{type(e).__name__}: {e}") from None
        self._write_record_safely()
        env = {"FUNCX_REDIS_URL": url}
        tls = self.transport.tls
        web_env = dict(env)
        if self.agent_redis_url:
            web_env["FUNCX_REDIS_AGENT_URL"] = self.agent_redis_url
        if self.redis is not None and self.redis.tls_port is not None and tls and tls.ca:
            # the CA of the embedded Redis's certificate, handed to endpoints as
            # redis_ca (the components themselves use its Unix socket)
            web_env["FUNCX_REDIS_CA"] = str(tls.ca)
        https = ["--certfile", str(tls.cert), "--keyfile", str(tls.key)] if tls else []
        bind = f"[{self.host}]" if ":" in self.host else self.host
        py = sys.executable
        workers, threads = sizing.web_workers(), int(setting("WEB_THREADS"))
        self.children = [
            Child("web", [py, "-m", "gunicorn", "-k", "gthread", "-w", str(workers),
                          "--threads", str(threads), "-b", f"{bind}:{self.port}", *https,
                          "--keep-alive", "30", "--graceful-timeout", "5",
                          "--log-level", "warning", "backend.wsgi:app"],
                  logs_dir() / "web.log", env=web_env),
            *[Child(sizing.ingester_name(i), [py, "-m", "backend.ingester"],
                    logs_dir() / f"{sizing.ingester_name(i)}.log", env=env)
              for i in range(sizing.ingesters())],
            *[Child(f"rq-{i}", [py, "-m", "backend.jobs"], logs_dir() / f"rq-{i}.log", env=env)
              for i in range(int(setting("RQ_WORKERS")))],
        ]
        for c in self.children:
            c.start()
        self._write_record_safely()
        self._wait_ready(timeout)
        self.ready = True
        self._write_record_safely()

    def _web_listens(self, web: Child) -> bool:
        """Whether the gunicorn master that *we* started holds the listening socket."""
        try:
            p = psutil.Process(web.proc.pid) if web.proc else None
            conns = p.net_connections(kind="tcp") if p else []
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port
                   for c in conns)

    def _wait_ready(self, timeout: float) -> None:
        import requests

        from backend.tls import verify_arg

        tls = self.transport.tls
        verify = verify_arg(tls.ca if tls else None)
        web = self.children[0]
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            for c in self.children:
                if not c.alive():
                    code = c.proc.returncode if c.proc else None
                    raise ComponentFailed(c.name, c.log, f"exited with status {code}")
            if self._web_listens(web):
                try:
                    if requests.get(f"{self.url}/v2/version", timeout=1, verify=verify).ok:
                        return
                except requests.exceptions.SSLError as e:  # never answers otherwise: say why
                    raise ComponentFailed("web", web.log, f"its certificate does not verify for "
                                          f"{self.url}: {e}") from None
                except requests.RequestException:
                    pass
            if time.monotonic() > deadline:
                raise ComponentFailed("web", web.log, f"did not answer /v2/version within {timeout}s")
            time.sleep(0.1)
        raise ComponentFailed("supervisor", None, "asked to stop while starting")

    def supervise(self) -> None:
        """Restart children that die, until asked to stop."""
        while not self.stopping.wait(0.5):
            changed = False
            if self.redis and self.redis.proc and self.redis.proc.poll() is not None:
                log.warning("redis-server exited (%s); restarting", self.redis.proc.returncode)
                self.redis.restarts += 1
                try:
                    self.redis.start()
                except RuntimeError as e:  # e.g. its port taken: log why, back off, retry
                    log.error("redis-server did not restart: %s", e)
                    self.stopping.wait(min(2 ** min(self.redis.restarts, 5), 30))
                changed = True
            for c in self.children:
                if c.proc is not None and c.proc.poll() is not None and not self.stopping.is_set():
                    log.warning("%s exited with %s; restarting", c.name, c.proc.returncode)
                    c.restarts += 1
                    if time.monotonic() - c.started < 2:  # crash loop: slow down
                        self.stopping.wait(min(2 ** min(c.restarts, 5), 30))
                    c.start()
                    changed = True
            if changed:
                self._write_record_safely()

    def shutdown(self, keep_record: bool = False) -> None:
        self.stopping.set()
        for c in self.children:  # signal all first, then wait: stops in parallel
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        for c in self.children:
            c.stop()
        if self.redis and self.redis.proc and self.redis.proc.poll() is None:
            self.redis.proc.terminate()  # redis flushes the AOF on SIGTERM
            self.redis.proc.wait(15)
        if not keep_record:
            with contextlib.suppress(FileNotFoundError):
                service_record_path().unlink()
        log.info("service stopped")


def end_predecessor(record: dict | None) -> list[int]:
    """End every process a dead predecessor's record names that still runs
    (pid *and* start time match, so a reused pid is left alone), with its
    descendants; return their pids.  Called with the lock held, so the
    predecessor's supervisor is gone (or hung: it is ended too)."""
    if not record:
        return []
    named = [record.get("supervisor") or {}]
    named += [c for c in (record.get("components") or {}).values() if isinstance(c, dict)]
    ended = []
    for d in named:
        rec = ProcessRecord.from_dict(d)
        if rec is None or rec.pid == os.getpid():
            continue
        proc = rec.process()
        if proc is not None:
            log.warning("ending %s (pid %d) left by a dead supervisor", d.get("name", "supervisor"),
                        rec.pid)
            end_tree(proc)
            ended.append(rec.pid)
    return ended


def run(host: str, port: int, transport: Plan | None = None) -> None:
    """Run the service in the foreground until SIGTERM/SIGINT.  ``transport``
    (:func:`backend.tls.plan`): None plans from the settings, and raises
    :class:`backend.tls.TransportRefused` before anything is started."""
    from backend.tls import plan, resolve_tls

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    transport = transport or plan(host, resolve_tls())
    if transport.warning:
        log.warning("%s", transport.warning)
    sup = Supervisor(host, port, transport)
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
    sup._take_lock()  # raises AlreadyRunning before anything is touched
    end_predecessor(read_json(service_record_path()))  # before redis takes its port again
    failed: dict | None = None
    try:
        try:
            sup.start()
        except ComponentFailed as e:
            failed = {"component": e.component, "log": str(e.log_path) if e.log_path else None,
                      "error": e.why}
            log.error("%s", e)
            sup.write_record(ready=False, failed=failed)
            raise
        log.info("funcX service at %s (ready)", sup.url)
        sup.supervise()
    finally:
        sup.shutdown(keep_record=failed is not None)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="run the funcX service supervisor")
    ap.add_argument("--host", default=str(setting("SERVICE_HOST")))
    ap.add_argument("--port", type=int, default=int(setting("SERVICE_PORT")))
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-ca")
    ap.add_argument("--insecure", action="store_true", default=None)
    a = ap.parse_args()
    from backend.tls import TransportRefused, plan, resolve_tls

    try:
        run(a.host, a.port, plan(a.host, resolve_tls(a.tls_cert, a.tls_key, a.tls_ca), a.insecure))
    except TransportRefused as e:
        print(str(e), file=sys.stderr)
        sys.exit(2)
    except AlreadyRunning as e:
        print(str(e), file=sys.stderr)
        sys.exit(1)
    except ComponentFailed as e:
        print(str(e), file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
