"""The service as an operator sees it: one per home, credentials private,
tokens hashed, Redis locked down and durable."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest
import redis
import requests


def funcx_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args],
                          capture_output=True, text=True, timeout=120)


def test_version_is_public_and_complete(service):
    body = requests.get(f"{service}/v2/version", params={"service": "all"}).json()
    assert {"api", "min_sdk_version", "min_ep_version"} <= body.keys()


def test_second_start_says_already_running(service):
    p = funcx_cli("service", "start", "--detach", "--port", "0")
    assert p.returncode == 1
    assert "already running" in p.stderr and service in p.stderr


def test_status_json(service):
    p = funcx_cli("service", "status", "--format", "json")
    st = json.loads(p.stdout)
    assert p.returncode == 0 and st["running"] and st["responding"] and st["url"] == service


def test_credentials_are_private(service, funcx_home):
    cred_dir = funcx_home / "credentials"
    assert stat.S_IMODE(os.stat(cred_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cred_dir / "token.json").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(funcx_home / "service" / "redis" / "secret").st_mode) == 0o600


def test_token_is_stored_hashed(redis_client, token):
    assert redis_client.exists(f"fx:token:{hashlib.sha256(token.encode()).hexdigest()}")
    kw = redis_client.connection_pool.connection_kwargs
    raw = redis.Redis(host=kw["host"], port=kw["port"], password=kw["password"])
    secret = token.encode()
    for key in raw.scan_iter(count=1000):
        assert secret not in key
        kind = raw.type(key)
        if kind == b"hash":
            assert all(secret not in v for v in raw.hvals(key))
        elif kind == b"string":
            assert secret not in raw.get(key)


@pytest.mark.slow
def test_embedded_redis_requires_password_and_keeps_aof(redis_client):
    kw = redis_client.connection_pool.connection_kwargs
    anon = redis.Redis(host=kw["host"], port=kw["port"])
    with pytest.raises(redis.AuthenticationError):
        anon.get("x")
    assert redis_client.config_get("appendonly")["appendonly"] == "yes"
    assert redis_client.config_get("appendfsync")["appendfsync"] == "everysec"
    assert redis_client.config_get("bind")["bind"] == "127.0.0.1"


def test_endpoint_credentials_reach_only_its_own_keys(http, redis_client):
    a = http.post(f"{http.base_url}/v3/endpoints", json={"endpoint_name": "acl-a"}).json()
    b = http.post(f"{http.base_url}/v3/endpoints", json={"endpoint_name": "acl-b"}).json()
    agent = redis.Redis.from_url(a["redis_url"], decode_responses=True)
    assert agent.xlen(a["task_stream"]) == 0  # its own stream: allowed
    redis_client.set("fx:task:00000000-0000-0000-0000-000000000000", "secret")
    for forbidden in (lambda: agent.xlen(b["task_stream"]),
                      lambda: agent.get("fx:task:00000000-0000-0000-0000-000000000000"),
                      lambda: agent.keys("*"),
                      lambda: agent.config_get("requirepass"),
                      lambda: agent.flushall()):
        with pytest.raises(redis.ResponseError, match="NOPERM|no permissions"):
            forbidden()
    assert redis_client.get("fx:task:00000000-0000-0000-0000-000000000000") == "secret"
    redis_client.delete("fx:task:00000000-0000-0000-0000-000000000000")
    # the service's own password is not part of what the endpoint receives
    assert redis_client.connection_pool.connection_kwargs["password"] not in json.dumps(a)


def test_version_all_shows_component_health(service):
    body = requests.get(f"{service}/v2/version", params={"service": "all"}).json()
    comps = body["components"]
    assert {"redis", "web", "ingester", "rq-0"} <= comps.keys()
    assert all(c["alive"] and c["pid"] for c in comps.values())
    assert "log" not in json.dumps(comps)  # public: health, not paths
    assert "components" not in requests.get(f"{service}/v2/version").json()
