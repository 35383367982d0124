"""The agent's Redis link (endpoint.redis_link): ``rediss://`` against a real
TLS ``redis-server`` (Debian's, with a CA and certificate made here), verified
with the CA the service hands out or FUNCX_CA_BUNDLE; and a start against a
Redis that does not answer fails, naming host:port and the likely cause,
never the password."""
from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import redis

from endpoint import redis_link
from tests.pki import make_ca, make_server_cert, pem

PASSWORD = "pw-" + uuid.uuid4().hex  # the ACL user's: must never show up
pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="needs a TLS-capable redis-server")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    """A real redis-server on a TLS-only loopback port whose certificate
    names ``localhost`` (not 127.0.0.1), with an ACL user ``agent``."""
    d = tmp_path_factory.mktemp("tls-redis")
    ca_key, ca_cert = make_ca("test redis CA")
    key, cert = make_server_cert(ca_key, ca_cert, ["localhost"])
    (d / "ca.pem").write_bytes(pem(ca_cert))
    (d / "cert.pem").write_bytes(pem(cert))
    (d / "key.pem").write_bytes(pem(key))
    os.chmod(d / "key.pem", 0o600)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(d / "cert.pem"), "--tls-key-file", str(d / "key.pem"),
         "--tls-ca-cert-file", str(d / "ca.pem"), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(d),
         "--user", "default", "off",
         "--user", "agent", "on", f">{PASSWORD}", "~*", "+@all"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the server says when it is ready: no polling
        seen.append(line)
        if "Ready to accept connections" in line:
            break
    else:
        proc.wait(5)
        pytest.fail("redis-server did not start:\n" + "".join(seen))
    yield {"port": port, "ca": (d / "ca.pem").read_text(), "ca_file": str(d / "ca.pem")}
    proc.terminate()
    proc.wait(10)


def info_for(url: str, **extra) -> dict:
    return {"redis_url": url, **extra}


def test_rediss_with_the_ca_the_service_hands_out(tls_redis, tmp_path, monkeypatch):
    for var in ("FUNCX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    url = f"rediss://agent:{PASSWORD}@localhost:{tls_redis['port']}/0"
    redis_link.check(info_for(url, redis_ca=tls_redis["ca"]), tmp_path, 5)
    r = redis_link.connect(info_for(url, redis_ca=tls_redis["ca"]), tmp_path)
    assert r.ping() is True
    assert r.connection_pool.connection_class is redis.SSLConnection
    ca = tmp_path / redis_link.CA_FILE
    assert ca.read_text() == tls_redis["ca"] and stat.S_IMODE(ca.stat().st_mode) == 0o600
    r.close()


def test_rediss_with_funcx_ca_bundle(tls_redis, tmp_path, monkeypatch):
    monkeypatch.setenv("FUNCX_CA_BUNDLE", tls_redis["ca_file"])
    url = f"rediss://agent:{PASSWORD}@localhost:{tls_redis['port']}/0"
    r = redis_link.connect(info_for(url), tmp_path)
    assert r.set("k", "v") and r.get("k") == "v"
    r.close()


@pytest.mark.parametrize("case", ["untrusted CA", "no CA at all", "host name mismatch"])
def test_rediss_refuses_what_it_cannot_verify(tls_redis, tmp_path, monkeypatch, case):
    """A certificate from another CA, none given (the system store does not
    trust the test CA), or an address the certificate does not name: the
    check fails, naming host:port and TLS, never the password."""
    for var in ("FUNCX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    host, extra = "localhost", {}
    if case == "untrusted CA":
        extra["redis_ca"] = pem(make_ca("another CA")[1]).decode()
    elif case == "host name mismatch":
        host, extra["redis_ca"] = "127.0.0.1", tls_redis["ca"]
    url = f"rediss://agent:{PASSWORD}@{host}:{tls_redis['port']}/0"
    with pytest.raises(redis_link.RedisUnreachable) as err:
        redis_link.check(info_for(url, **extra), tmp_path, 5)
    text = str(err.value)
    assert f"{host}:{tls_redis['port']}" in text and "TLS" in text, text
    assert PASSWORD not in text and PASSWORD not in repr(err.value)


def test_the_agent_talks_to_redis_over_tls(tls_redis, tmp_path, monkeypatch):
    """The agent itself, built on a registration answer with a rediss:// URL
    and redis_ca: its heartbeat lands in that Redis, over TLS."""
    import threading

    from parsl.providers import LocalProvider

    from endpoint.agent import Agent
    from endpoint.config import Config

    for var in ("FUNCX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    url = f"rediss://agent:{PASSWORD}@localhost:{tls_redis['port']}/0"
    eid = str(uuid.uuid4())
    info = {"endpoint_id": eid, "redis_url": url, "redis_ca": tls_redis["ca"],
            "status_key": f"fx:ep:{eid}:status"}
    config = Config(provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=0),
                    heartbeat_period=0.2, heartbeat_threshold=2)
    agent = Agent("tls", config, None, tmp_path, eid, info)  # type: ignore[arg-type]
    t = threading.Thread(target=agent.heartbeat, daemon=True)
    try:
        assert agent.r.connection_pool.connection_class is redis.SSLConnection
        t.start()
        check = redis_link.connect(info, tmp_path / "probe")
        waited = threading.Event()
        for _ in range(50):  # the heartbeat is periodic: a bounded wait for its first write
            if check.hget(info["status_key"], "details"):
                break
            waited.wait(0.1)
        import json

        details = json.loads(check.hget(info["status_key"], "details") or "{}")
        assert details.get("problems") == [] and "managers" in details, details
        check.close()
    finally:
        agent.stop_event.set()
        t.join(5)
        agent.interchange.close()


# --------------------------------------------- a Redis that does not answer
class FakeService:
    """A real HTTP server answering only endpoint registration, handing out
    a Redis URL (with a password) where nothing answers."""

    def __init__(self, redis_url: str):
        from flask import Flask, jsonify
        from live import Server

        app = Flask("fake-service")
        eid = str(uuid.uuid4())

        @app.route("/v3/endpoints", methods=["POST"])
        @app.route("/v3/endpoints/<path:_>", methods=["PUT"])
        def register(_=None):
            return jsonify({"endpoint_id": eid, "redis_url": redis_url})

        self.server = Server(app)
        self.url = self.server.url


def closed_port(host: str) -> int:
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


@pytest.mark.parametrize("where", ["loopback", "routable"])
def test_start_fails_when_the_redis_handed_out_does_not_answer(service, monkeypatch, where):
    """`funcx-endpoint start` exits non-zero instead of saying "running", with
    a message naming host:port and the likely cause; neither it nor the
    endpoint's log holds the password."""
    from typer.testing import CliRunner

    from endpoint.addresses import detect_routable, is_loopback
    from endpoint.cli import app
    from endpoint.paths import EndpointDir

    host = "127.0.0.1" if where == "loopback" else detect_routable()
    if where == "routable" and is_loopback(host):
        pytest.skip("this host has no routable address")
    port = closed_port(host)
    fake = FakeService(f"redis://ep-agent:{PASSWORD}@{host}:{port}/0")
    try:
        monkeypatch.setenv("FUNCX_SERVICE_ADDRESS", fake.url)
        monkeypatch.setenv("FUNCX_AGENT_REDIS_CHECK_S", "3")
        name = f"noredis-{uuid.uuid4().hex[:6]}"
        ep = EndpointDir(name)
        ep.path.mkdir(parents=True, mode=0o700)
        ep.config_file.write_text(
            "from parsl.providers import LocalProvider\nfrom endpoint.config import Config\n"
            "config = Config(provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=1))\n")
        out = CliRunner().invoke(app, ["start", name])
    finally:
        fake.server.close()
    text = out.output
    assert out.exit_code != 0, text
    assert "is running" not in text, text
    assert f"{host}:{port}" in text and "failed while connecting to the service's Redis" in text
    cause = "loopback address" if where == "loopback" else "nothing accepts connections"
    assert cause in text, text
    assert PASSWORD not in text
    assert PASSWORD not in ep.log_file.read_text()
    assert not ep.pid_file.exists()


def test_redis_unavailable_logs_name_the_address():
    """Every "redis unavailable" log line of the agent names host:port."""
    src = Path(__file__).parent.parent / "endpoint" / "agent.py"
    lines = [line for line in src.read_text().splitlines() if "unavailable" in line
             and "log." in line]
    assert lines and all("redis at %s" in line for line in lines), lines
    assert redis_link.where(f"rediss://u:{PASSWORD}@db.example:6380/0") == "db.example:6380"
