"""Shared fixtures: a real service (embedded redis-server, gunicorn, ingester,
RQ worker) on a loopback port and a real endpoint process, under a private
FUNCX_HOME for the whole test session."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything reads settings: a private home and fast heartbeats.
_HOME = Path(tempfile.mkdtemp(prefix="funcx-test-"))
os.environ["FUNCX_HOME"] = str(_HOME)
os.environ["FUNCX_HEARTBEAT_PERIOD_S"] = "0.5"
os.environ["FUNCX_HEARTBEAT_THRESHOLD_S"] = "3"
os.environ["FUNCX_MAX_PAYLOAD_BYTES"] = str(1024 * 1024)  # small, so 413 is cheap to test
os.environ.pop("FUNCX_SERVICE_ADDRESS", None)
os.environ.pop("FUNCX_REDIS_URL", None)

ENDPOINT = "pytest-ep"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def funcx_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def service(funcx_home):
    """URL of a running service; stopped at the end of the session."""
    from backend import control

    url = control.start_detached(port=0)
    yield url
    control.stop()


@pytest.fixture(scope="session")
def redis_client(service):
    """A client of the service's own Redis (for assertions on stored state)."""
    from live import service_redis_url

    from backend.redis_conn import connect

    return connect(service_redis_url())


@pytest.fixture(scope="session")
def token(service, funcx_home) -> str:
    import json

    return json.loads((funcx_home / "credentials" / "token.json").read_text())["token"]


@pytest.fixture(scope="session")
def endpoint(service):
    """Id of a running endpoint with 2 workers; stopped at the end of the session."""
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir

    ep = EndpointDir(ENDPOINT)
    if not ep.exists():
        write_template(ep.config_file, ENDPOINT, workers=2)
    eid = daemon.start(ENDPOINT)
    yield eid
    daemon.stop(ENDPOINT)


@pytest.fixture(scope="session")
def fxc(service):
    from funcx import FuncXClient

    client = FuncXClient()
    client.throttling_enabled = False  # one client shared by the whole session
    return client


@pytest.fixture
def http(service, token):
    """A requests session with the local token, and the base URL."""
    import requests

    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    s.base_url = service
    yield s
    s.close()
