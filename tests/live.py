"""Helpers for tests that need a second, in-process real server on the
session's Redis (e.g. with different settings)."""
from __future__ import annotations

import threading

from werkzeug.serving import make_server


def service_redis_url() -> str:
    """The URL (with password) of the session service's embedded Redis."""
    from backend.embedded import EmbeddedRedis
    from backend.supervisor import logs_dir
    from funcx.home import service_dir

    return EmbeddedRedis(service_dir() / "redis", logs_dir() / "redis.log").url


class Server:
    """A WSGI app served for real (werkzeug) on a loopback port, in a thread."""

    def __init__(self, app):
        self.srv = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.srv.server_port}"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.srv.shutdown()
        self.thread.join(10)
