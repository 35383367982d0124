"""Handing a token over: ``funcx login --token-file`` takes the service's own
credentials file, a Globus-style token JSON or a bare token, adopts the
service the file names when none is configured, and never shows a secret.

Each login runs the real ``funcx`` CLI in its own process, with its own
``FUNCX_HOME`` (a second machine), against the session's real service.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from funcx.sdk.login import BadTokenFile, parse_token_text


def _login(home: Path, token_file: Path, *extra: str, service: str | None = None,
           debug: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FUNCX_SERVICE_ADDRESS"}
    env["FUNCX_HOME"] = str(home)
    if service:
        env["FUNCX_SERVICE_ADDRESS"] = service
    cmd = [sys.executable, "-m", "funcx_cli.main", *(["--debug"] if debug else []), "login",
           "--token-file", str(token_file), *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def _assert_no_secret(p: subprocess.CompletedProcess, secret: str) -> None:
    """Neither the secret nor any 8-character piece of it is shown."""
    out = p.stdout + p.stderr
    pieces = {secret[i:i + 8] for i in range(0, max(1, len(secret) - 7))}
    shown = [piece for piece in pieces if piece in out]
    assert not shown, f"the secret leaked ({len(shown)} pieces) in: {out!r}"[:200]


def _stored(home: Path) -> dict:
    return json.loads((home / "credentials" / "token.json").read_text())


@pytest.fixture(scope="module")
def service_credentials(service, funcx_home) -> dict:
    """The service's own credentials file, as `funcx service start` wrote it."""
    rec = json.loads((funcx_home / "credentials" / "token.json").read_text())
    assert {"user", "user_id", "token", "service_url"} <= rec.keys()
    return rec


def test_service_credentials_file_is_accepted_and_its_service_adopted(
        service_credentials, tmp_path):
    f = tmp_path / "token.json"
    f.write_text(json.dumps(service_credentials, indent=2))
    home = tmp_path / "laptop"
    p = _login(home, f)
    assert p.returncode == 0, p.stderr
    url = service_credentials["service_url"]
    assert f"Logged in to {url} as {service_credentials['user']}" in p.stdout
    assert "Using the service named in" in p.stderr and url in p.stderr
    _assert_no_secret(p, service_credentials["token"])
    stored = _stored(home)
    assert stored["token"] == service_credentials["token"] and stored["service_url"] == url
    assert (home / "credentials" / "token.json").stat().st_mode & 0o077 == 0
    # the adopted service is now this machine's: whoami needs no --service
    env = {k: v for k, v in os.environ.items() if k != "FUNCX_SERVICE_ADDRESS"}
    who = subprocess.run([sys.executable, "-m", "funcx_cli.main", "whoami"], capture_output=True,
                         text=True, timeout=120, env={**env, "FUNCX_HOME": str(home)})
    assert who.returncode == 0 and service_credentials["user"] in who.stdout, who.stderr


def test_globus_style_json_with_a_configured_service(service, service_credentials, tmp_path):
    f = tmp_path / "globus.json"
    f.write_text(json.dumps({"access_token": service_credentials["token"], "expires_in": 172800,
                             "resource_server": "funcx_service", "token_type": "Bearer",
                             "service_url": "https://elsewhere.example.org"}))
    home = tmp_path / "laptop"
    p = _login(home, f, "--format", "json", service=service)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["service"] == service and "Using the service named" not in p.stderr
    assert "elsewhere.example.org" in p.stderr and "configured" in p.stderr
    _assert_no_secret(p, service_credentials["token"])
    assert _stored(home)["service_url"] == service


def test_bare_token_with_whitespace(service, service_credentials, tmp_path):
    f = tmp_path / "bare"
    f.write_text(f"\n  {service_credentials['token']}  \n\n")
    home = tmp_path / "laptop"
    p = _login(home, f, service=service)
    assert p.returncode == 0, p.stderr
    assert "Using the service named" not in p.stderr
    _assert_no_secret(p, service_credentials["token"])
    assert _stored(home)["token"] == service_credentials["token"]


def test_credentials_json_on_standard_input(service, service_credentials, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "FUNCX_SERVICE_ADDRESS"}
    home = tmp_path / "laptop"
    p = subprocess.run([sys.executable, "-m", "funcx_cli.main", "--service", service, "login"],
                       input=json.dumps(service_credentials, indent=2), capture_output=True,
                       text=True, timeout=120, env={**env, "FUNCX_HOME": str(home)})
    assert p.returncode == 0 and "Logged in" in p.stdout, p.stderr
    _assert_no_secret(p, service_credentials["token"])
    assert _stored(home)["token"] == service_credentials["token"]


def _secret() -> str:
    return "fxs" + secrets.token_urlsafe(32)


HOSTILE = {
    "a JSON list holding the token": lambda s: json.dumps([s]),
    "the token as a JSON key": lambda s: json.dumps({s: "x"}),
    "a token field that is an object": lambda s: json.dumps({"token": {"value": s}}),
    "an access_token that is a number-like list": lambda s: json.dumps({"access_token": [s, 1]}),
    "broken JSON around the token": lambda s: '{"token": "' + s + '",,}',
    "several lines": lambda s: f"{s}\nsecond line {s[::-1]}\n",
    "a token with a space inside": lambda s: f"{s[:20]} {s[20:]}",
    "a token with non-ASCII characters": lambda s: s[:10] + "\u2603\u00e9" + s[10:],
    "a JSON token with a line break": lambda s: json.dumps({"token": s[:15] + "\r\nX-Evil: 1" + s}),
}


@pytest.mark.parametrize("shape", sorted(HOSTILE))
def test_hostile_token_files_never_show_the_secret(service, tmp_path, shape):
    secret = _secret()
    f = tmp_path / "hostile"
    f.write_text(HOSTILE[shape](secret))
    home = tmp_path / "laptop"
    for debug in (False, True):
        p = _login(home, f, service=service, debug=debug)
        assert p.returncode == 2, (shape, p.returncode)
        assert str(f) in p.stderr, p.stderr
        _assert_no_secret(p, secret)
    assert not (home / "credentials" / "token.json").exists()


def test_binary_file_is_refused_without_its_bytes(service, tmp_path):
    secret = _secret()
    f = tmp_path / "binary"
    f.write_bytes(b"\xff\xfe" + secret.encode() + b"\x80")
    p = _login(tmp_path / "laptop", f, service=service)
    assert p.returncode == 2 and "not UTF-8" in p.stderr
    _assert_no_secret(p, secret)


@pytest.mark.parametrize("shape", ["bare", "credentials", "globus"])
def test_token_the_service_refuses(service, tmp_path, shape):
    """A well-formed token the service does not know: exit 4, nothing stored,
    the secret in no message (nor in the traceback --debug shows)."""
    secret = _secret()
    text = {"bare": secret, "globus": json.dumps({"access_token": secret}),
            "credentials": json.dumps({"user": "x", "user_id": "y", "token": secret,
                                       "service_url": service})}[shape]
    f = tmp_path / "refused.json"
    f.write_text(text)
    home = tmp_path / "laptop"
    for debug in (False, True):
        p = _login(home, f, service=service, debug=debug)
        assert p.returncode == 4, p.stderr
        assert "does not accept this token" in p.stderr and str(f) in p.stderr
        _assert_no_secret(p, secret)
    assert not (home / "credentials" / "token.json").exists()


def test_parse_token_text_shapes():
    assert parse_token_text('  {"token": "abc"} ').kind == "funcX credentials"
    handed = parse_token_text(json.dumps({"by_resource_server": {
        "auth.globus.org": {"access_token": "auth-tok"},
        "funcx_service": {"access_token": "fx-tok"}}}))
    assert handed.token == "fx-tok" and handed.kind == "Globus token"
    assert parse_token_text('{"token": "t", "service_url": "https://h:5000/"}').service_url \
        == "https://h:5000"
    assert parse_token_text('{"token": "t", "service_url": "file:///etc"}').service_url is None
    assert "secret-token" not in repr(parse_token_text("secret-token"))
    with pytest.raises(BadTokenFile):
        parse_token_text("   \n")
    with pytest.raises(BadTokenFile):
        parse_token_text("x" * 9000)
