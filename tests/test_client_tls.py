"""The SDK verifies an https service: against FUNCX_CA_BUNDLE, else
REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else the system store.

A real TLS server on loopback (``http.server`` wrapped in ``ssl``) answers
``/v2/version`` and ``/v2/whoami`` with a certificate signed by a CA made
here with ``cryptography``; nothing about the CA is in any system store.
"""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from funcx.sdk.tls import CertificateNotTrusted, TLSConfigError, TLSError
from funcx.sdk.web_client import WebClient
from tests.pki import make_ca, make_server_cert, pem

TOKEN = "tls-test-secret-token-5f1c9a7e"
BUNDLE_VARS = ("FUNCX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.startswith("/v2/version"):
            body: dict = {"api": "2", "min_sdk_version": "0.0.1", "min_ep_version": "0.0.1"}
        elif self.path.startswith("/v2/whoami"):
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._send(401, {"code": "UNAUTHORIZED", "message": "bad token"})
                return
            body = {"username": "tls-user", "user_id": "u-1"}
        else:
            self._send(404, {"code": "NOT_FOUND", "message": "no such route"})
            return
        self._send(200, body)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        return None


class Pki:
    """A CA, a second CA nobody should trust, and their PEM files."""

    def __init__(self, d: Path):
        self.dir = d
        self.ca_key, self.ca_cert = make_ca("funcx test CA")
        self.ca = d / "ca.pem"
        self.ca.write_bytes(pem(self.ca_cert))
        _, other = make_ca("some other CA")
        self.other_ca = d / "other-ca.pem"
        self.other_ca.write_bytes(pem(other))

    def server_files(self, names: list[str], tag: str) -> tuple[Path, Path]:
        key, cert = make_server_cert(self.ca_key, self.ca_cert, names)
        kf, cf = self.dir / f"{tag}.key", self.dir / f"{tag}.pem"
        kf.write_bytes(pem(key))
        cf.write_bytes(pem(cert))
        return cf, kf


def _serve(cert: Path, key: Path) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https(pki) -> Iterator[str]:
    """An https server whose certificate (for 127.0.0.1) the test CA signed."""
    server, url = _serve(*pki.server_files(["127.0.0.1", "localhost"], "good"))
    yield url
    server.shutdown()


@pytest.fixture(autouse=True)
def no_bundle(monkeypatch):
    for name in BUNDLE_VARS:
        monkeypatch.delenv(name, raising=False)


def _whoami(url: str) -> dict:
    web = WebClient(url, TOKEN, timeout=10)
    try:
        return web.get("/v2/whoami")
    finally:
        web.close()


def test_untrusted_ca_is_refused_with_a_clear_error(https):
    with pytest.raises(CertificateNotTrusted) as e:
        _whoami(https)
    msg = str(e.value)
    assert https in msg and "FUNCX_CA_BUNDLE" in msg and "system's trust store" in msg
    assert "certificate" in msg
    assert TOKEN not in msg and TOKEN[:12] not in msg


def test_funcx_ca_bundle_is_trusted(https, pki, monkeypatch):
    monkeypatch.setenv("FUNCX_CA_BUNDLE", str(pki.ca))
    assert _whoami(https) == {"username": "tls-user", "user_id": "u-1"}


def test_the_local_service_is_verified_with_its_own_ca(https, pki, monkeypatch, tmp_path):
    """On the service's own host (its record names the URL and CA), no
    setting is needed; another URL still gets the system store."""
    import json

    home = tmp_path / "home"
    (home / "service").mkdir(parents=True)
    (home / "service" / "service.json").write_text(json.dumps({"url": https,
                                                               "tls_ca": str(pki.ca)}))
    monkeypatch.setenv("FUNCX_HOME", str(home))
    assert _whoami(https) == {"username": "tls-user", "user_id": "u-1"}
    other = https.replace("127.0.0.1", "localhost")  # same server, not the recorded URL
    with pytest.raises(CertificateNotTrusted):
        _whoami(other)


@pytest.mark.parametrize("var", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_requests_style_bundles_are_trusted(https, pki, monkeypatch, var):
    monkeypatch.setenv(var, str(pki.ca))
    assert _whoami(https)["username"] == "tls-user"


def test_a_ca_directory_is_trusted(https, pki, monkeypatch, tmp_path):
    """As in requests, a bundle variable may name a c_rehash directory."""
    d = tmp_path / "cas"
    d.mkdir()
    h = subprocess.run(["openssl", "x509", "-hash", "-noout", "-in", str(pki.ca)],
                       capture_output=True, text=True, check=True).stdout.strip()
    (d / f"{h}.0").write_bytes(pki.ca.read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(d))
    assert _whoami(https)["username"] == "tls-user"


def test_funcx_ca_bundle_wins_over_requests_ca_bundle(https, pki, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca))
    monkeypatch.setenv("FUNCX_CA_BUNDLE", str(pki.other_ca))
    with pytest.raises(CertificateNotTrusted) as e:
        _whoami(https)
    assert f"{pki.other_ca} (FUNCX_CA_BUNDLE)" in str(e.value)
    monkeypatch.setenv("FUNCX_CA_BUNDLE", str(pki.ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(pki.other_ca))
    assert _whoami(https)["username"] == "tls-user"


def test_certificate_for_another_host_is_refused(pki, monkeypatch):
    server, url = _serve(*pki.server_files(["service.example.org"], "elsewhere"))
    try:
        monkeypatch.setenv("FUNCX_CA_BUNDLE", str(pki.ca))
        with pytest.raises(CertificateNotTrusted) as e:
            _whoami(url)
        assert "mismatch" in str(e.value) and url in str(e.value)
        assert "an address the certificate names" in str(e.value)
    finally:
        server.shutdown()


def test_missing_bundle_file_names_the_variable(https, monkeypatch, tmp_path):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "nope.pem"))
    with pytest.raises(TLSConfigError) as e:
        _whoami(https)
    assert "REQUESTS_CA_BUNDLE" in str(e.value) and "nope.pem" in str(e.value)


def test_https_to_a_plain_http_port_is_a_tls_error_not_a_retry():
    """A plain-http server addressed as https: one clear error, no retries."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        web = WebClient(url, TOKEN, timeout=10)
        with pytest.raises(TLSError) as e:
            web.request("GET", "/v2/version", retry_s=5)
        assert url in str(e.value) and not isinstance(e.value, CertificateNotTrusted)
        assert web.request_count == 1  # refused at once, not retried for 5 s
    finally:
        server.shutdown()


def test_a_handshake_cut_short_is_unreachable_and_retried():
    """A peer that closes mid-handshake (a service restarting) is not a TLS
    misconfiguration: ServiceUnreachable, retried within the budget."""
    import socket

    from funcx.errors import ServiceUnreachable

    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def close_each() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=close_each, daemon=True).start()
    url = f"https://127.0.0.1:{listener.getsockname()[1]}"
    try:
        web = WebClient(url, TOKEN, timeout=5)
        with pytest.raises(ServiceUnreachable) as e:
            web.request("GET", "/v2/version", retry_s=0.5)
        assert "TLS" in str(e.value) and not isinstance(e.value, TLSError)
        assert web.request_count >= 2, "a GET cut short is retried"
    finally:
        listener.close()


def test_sdk_client_and_cli_verify(https, pki, tmp_path, monkeypatch):
    """FuncXClient and the funcx CLI (whoami) go through the same checks."""
    from funcx import FuncXClient

    env = {**os.environ, "FUNCX_HOME": str(tmp_path / "home")}
    for name in BUNDLE_VARS:
        env.pop(name, None)
    cred = tmp_path / "home" / "credentials"
    cred.mkdir(parents=True)
    (cred / "token.json").write_text(json.dumps({"token": TOKEN, "service_url": https}))
    cmd = [sys.executable, "-m", "funcx_cli.main", "--service", https, "whoami"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "not trusted" in refused.stderr and "FUNCX_CA_BUNDLE" in refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr
    ok = subprocess.run(cmd, env={**env, "FUNCX_CA_BUNDLE": str(pki.ca)}, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "tls-user" in ok.stdout

    with pytest.raises(CertificateNotTrusted):
        FuncXClient(https, access_token=TOKEN)
    monkeypatch.setenv("FUNCX_CA_BUNDLE", str(pki.ca))
    fxc = FuncXClient(https, access_token=TOKEN)
    assert fxc.whoami()["username"] == "tls-user"


def test_endpoint_side_verifies(https, pki, tmp_path):
    """`funcx-endpoint init` (the agent's own web client, its stored token)
    refuses the untrusted service and works once FUNCX_CA_BUNDLE names the CA."""
    env = {k: v for k, v in os.environ.items() if k not in BUNDLE_VARS}
    env.update({"FUNCX_HOME": str(tmp_path / "login-node"), "FUNCX_SERVICE_ADDRESS": https})
    cred = tmp_path / "login-node" / "credentials"
    cred.mkdir(parents=True)
    (cred / "token.json").write_text(json.dumps({"token": TOKEN, "service_url": https}))
    cmd = [sys.executable, "-m", "endpoint.cli", "init"]
    refused = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 5
    assert "not trusted" in refused.stderr and "FUNCX_CA_BUNDLE" in refused.stderr
    assert TOKEN not in refused.stdout + refused.stderr
    ok = subprocess.run(cmd, env={**env, "FUNCX_CA_BUNDLE": str(pki.ca)}, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and "logged in as tls-user" in ok.stdout, ok.stderr
