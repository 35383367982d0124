"""Helpers for tests that need a second, in-process real server on the
session's Redis (e.g. with different settings)."""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import SimpleNamespace

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


def another_user(redis_client, prefix: str, **client_kwargs):
    """An unthrottled FuncXClient of a new user of the session's service (a
    second tenant), ``client_kwargs`` passed to FuncXClient."""
    import uuid

    from backend.store import users
    from funcx import FuncXClient

    uid = users.create_user(redis_client, f"{prefix}-{uuid.uuid4().hex[:8]}")
    client = FuncXClient(access_token=users.issue_token(redis_client, uid), **client_kwargs)
    client.throttling_enabled = False
    return client


@contextlib.contextmanager
def running_endpoint(name: str, workers: int, **options) -> Iterator[str]:
    """Endpoint ``name`` (configured from the template on first use, with the
    Config ``options`` written as Python literals), started; yields its id and
    stops it after."""
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir

    ep = EndpointDir(name)
    if not ep.exists():
        write_template(ep.config_file, name, workers=workers)
        lines = "".join(f"    {k}={v!r},\n" for k, v in options.items())
        text = ep.config_file.read_text()
        ep.config_file.write_text(text.replace("config = Config(\n", "config = Config(\n" + lines, 1))
    eid = daemon.start(name)
    try:
        yield eid
    finally:
        daemon.stop(name)


@contextlib.contextmanager
def endpoint_with_config(fxc, prefix: str, config: str) -> Iterator[SimpleNamespace]:
    """A fresh endpoint named ``<prefix>-<random>`` whose config.py is
    ``config``: started; yields ``name``, ``eid`` and ``dir``; prints the tail
    of its log if the test fails; stopped and deleted after."""
    import uuid

    from endpoint import daemon
    from endpoint.paths import EndpointDir

    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, exist_ok=True, mode=0o700)
    ep.config_file.write_text(config)
    eid = daemon.start(name)
    try:
        yield SimpleNamespace(name=name, eid=eid, dir=ep)
    except BaseException:
        print(f"--- {ep.log_file} ---\n{ep.log_file.read_text()[-6000:]}")
        raise
    finally:
        daemon.stop(name)
        try:
            fxc.delete_endpoint(eid)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
