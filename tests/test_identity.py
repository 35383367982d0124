"""Identity end to end: `funcx admin` users and service accounts, `funcx
login/whoami/logout` in a separate home, token expiry (a Redis key TTL) and
revocation, and local groups driven by `funcx group` with a function shared
with the group and run by a member on a real (public) endpoint."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from funcx.errors import FuncxAPIError


def double(x):
    return 2 * x


def fx(*args: str, home: Path | None = None, stdin: str | None = None,
       env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items()
         if k not in ("FUNCX_SDK_CLIENT_ID", "FUNCX_SDK_CLIENT_SECRET")}
    if home is not None:
        e["FUNCX_HOME"] = str(home)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args], capture_output=True,
                          text=True, timeout=120, input=stdin, env=e)


def ok_json(p: subprocess.CompletedProcess):
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    return json.loads(p.stdout)


def whoami(service: str, token: str) -> requests.Response:
    return requests.get(f"{service}/v2/whoami", headers={"Authorization": f"Bearer {token}"},
                        timeout=30)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def home_copy(tmp_path, funcx_home) -> Path:
    """A second FUNCX_HOME that knows the service (its service.json), no credentials."""
    home = tmp_path / "home"
    (home / "service").mkdir(parents=True, mode=0o700)
    shutil.copy(funcx_home / "service" / "service.json", home / "service" / "service.json")
    return home


@pytest.fixture(scope="module")
def public_ep(service, endpoint):
    """A running endpoint of the session user, registered public."""
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir

    name = "pytest-public-ep"
    ep = EndpointDir(name)
    write_template(ep.config_file, name, workers=1)
    text = ep.config_file.read_text()
    assert "config = Config(\n" in text
    ep.config_file.write_text(text.replace("config = Config(\n", "config = Config(\n    public=True,\n", 1))
    eid = daemon.start(name)
    yield eid
    daemon.stop(name)


# ---------------------------------------------------------------------------- admin
def test_admin_user_add_list_disable_enable(service):
    name = _name("ada")
    data = ok_json(fx("admin", "user", "add", name, "--format", "json"))
    assert {"user", "token"} <= data.keys() and data["user"] == name
    token = data["token"]
    me = whoami(service, token)
    assert me.status_code == 200 and me.json()["username"] == name
    uid = me.json()["user_id"]
    assert data.get("user_id", uid) == uid

    rows = {r["user"]: r for r in ok_json(fx("admin", "user", "list", "--format", "json"))}
    assert rows[name]["user_id"] == uid and rows[name]["disabled"] is False
    assert rows[name]["kind"] == "user"

    again = fx("admin", "user", "add", name, "--format", "json")
    assert again.returncode != 0 and "already exists" in again.stderr and not again.stdout

    p = fx("admin", "user", "disable", name)
    assert p.returncode == 0, p.stderr
    resp = whoami(service, token)  # at once: no cache in between
    assert resp.status_code == 401 and resp.json()["code"] == "UNAUTHORIZED"
    rows = {r["user"]: r for r in ok_json(fx("admin", "user", "list", "--format", "json"))}
    assert rows[name]["disabled"] is True
    # a token issued while disabled does not work either
    extra = ok_json(fx("admin", "user", "token", name, "--format", "json"))["token"]
    assert whoami(service, extra).status_code == 401

    assert fx("admin", "user", "enable", name).returncode == 0
    # enabling does not revive what was issued before the disable
    assert whoami(service, token).status_code == 401
    assert whoami(service, extra).status_code == 200

    missing = fx("admin", "user", "disable", _name("nobody"))
    assert missing.returncode == 3 and "no user named" in missing.stderr


def test_admin_client_is_a_service_account(service, monkeypatch, redis_client):
    from funcx import FuncXClient

    name = _name("pipeline-bot")
    creds = ok_json(fx("admin", "client", "add", name, "--format", "json"))
    assert creds["client_id"] and creds["client_secret"] and creds["name"] == name
    uuid.UUID(creds["client_id"])
    # only a hash of the secret is stored
    stored = redis_client.hgetall(f"fx:client:{creds['client_id']}")
    assert stored and creds["client_secret"] not in json.dumps(stored)

    monkeypatch.setenv("FUNCX_SDK_CLIENT_ID", creds["client_id"])
    monkeypatch.setenv("FUNCX_SDK_CLIENT_SECRET", creds["client_secret"])
    bot = FuncXClient(service)
    me = bot.whoami()
    assert me["username"] == name and me["user_id"] == creds["user_id"]
    fid = bot.register_function(double)
    assert redis_client.hget(f"fx:fn:{fid}", "owner") == creds["user_id"]
    assert bot.get_function(fid)["function_uuid"] == fid
    rows = {r["user"]: r for r in ok_json(fx("admin", "user", "list", "--format", "json"))}
    assert rows[name]["kind"] == "client"

    monkeypatch.setenv("FUNCX_SDK_CLIENT_SECRET", creds["client_secret"] + "x")
    with pytest.raises(FuncxAPIError) as e:
        FuncXClient(service).whoami()
    assert e.value.http_status == 401

    # disabling the account stops its live token and further exchanges
    assert fx("admin", "user", "disable", name).returncode == 0
    with pytest.raises(FuncxAPIError) as e:
        bot.whoami()
    assert e.value.http_status == 401
    monkeypatch.setenv("FUNCX_SDK_CLIENT_SECRET", creds["client_secret"])
    with pytest.raises(FuncxAPIError) as e:
        FuncXClient(service).whoami()
    assert e.value.http_status == 401


# ------------------------------------------------------------------ login / logout
def test_login_token_file_whoami_logout(service, home_copy, tmp_path):
    name = _name("lin")
    token = ok_json(fx("admin", "user", "add", name, "--format", "json"))["token"]
    tf = tmp_path / "my.token"
    tf.write_text(token + "\n")
    tf.chmod(0o600)

    login = ok_json(fx("login", "--token-file", str(tf), "--format", "json", home=home_copy))
    assert login["user"] == name and login["service"] == service
    cred = home_copy / "credentials" / "token.json"
    assert _mode(cred) == 0o600 and _mode(cred.parent) == 0o700
    assert json.loads(cred.read_text())["token"] == token

    me = ok_json(fx("whoami", "--format", "json", home=home_copy))
    assert me["user"] == name and me["service"] == service
    assert me["user_id"] == whoami(service, token).json()["user_id"]

    out = fx("logout", home=home_copy)
    assert out.returncode == 0 and "Logged out" in out.stdout, out.stderr
    assert not cred.exists()
    assert whoami(service, token).status_code == 401  # revoked on the service
    again = fx("whoami", home=home_copy)
    assert again.returncode == 4 and "Traceback" not in again.stderr


def test_login_stdin_with_service_flag(service, tmp_path, funcx_home):
    """No service.json in this home: --service names the service, and the
    stored credentials remember it for later commands."""
    home = tmp_path / "bare-home"
    name = _name("sin")
    token = ok_json(fx("admin", "user", "add", name, "--format", "json"))["token"]
    p = fx("--service", service, "login", stdin=token + "\n", home=home)
    assert p.returncode == 0 and name in p.stdout, p.stderr
    cred = home / "credentials" / "token.json"
    assert _mode(cred) == 0o600
    assert json.loads(cred.read_text())["service_url"] == service
    me = ok_json(fx("whoami", "--format", "json", home=home))
    assert me["user"] == name
    assert fx("logout", home=home).returncode == 0
    assert not cred.exists() and whoami(service, token).status_code == 401


def test_login_refuses_a_bad_token_and_writes_nothing(service, home_copy, tmp_path):
    p = fx("login", stdin="fx_not-a-token\n", home=home_copy)
    assert p.returncode == 4 and "does not accept" in p.stderr
    assert "fx_not-a-token" not in p.stderr + p.stdout
    assert not (home_copy / "credentials" / "token.json").exists()


# ---------------------------------------------------------- expiry and revocation
def test_tokens_expire_with_their_redis_key(service, redis_client):
    from backend.store import users

    uid = users.create_user(redis_client, _name("ttl"))
    tok = users.issue_token(redis_client, uid, ttl_s=1)
    key = f"fx:token:{users.hash_token(tok)}"
    assert redis_client.ttl(key) in (0, 1) and 0 < redis_client.pttl(key) <= 1000
    assert whoami(service, tok).status_code == 200
    deadline = time.monotonic() + 5  # bounded wait for Redis to expire the key
    while redis_client.exists(key):
        assert time.monotonic() < deadline, "the token key did not expire"
        time.sleep(0.05)
    resp = whoami(service, tok)
    assert resp.status_code == 401 and resp.json()["code"] == "UNAUTHORIZED"

    # the default lifetime is the configured TOKEN_TTL_S; revocation is immediate
    from funcx.defaults import setting

    tok2 = users.issue_token(redis_client, uid)
    key2 = f"fx:token:{users.hash_token(tok2)}"
    assert int(setting("TOKEN_TTL_S")) - 5 <= redis_client.ttl(key2) <= int(setting("TOKEN_TTL_S"))
    assert whoami(service, tok2).status_code == 200
    assert users.revoke_token(redis_client, tok2) is True
    assert not redis_client.exists(key2)
    assert whoami(service, tok2).status_code == 401
    assert users.revoke_token(redis_client, tok2) is False


# ------------------------------------------------------------------------ groups
def test_groups_cli_and_sharing(service, fxc, public_ep):
    from funcx import FuncXClient

    owner = fxc.whoami()
    member_name = _name("member")
    member_tok = ok_json(fx("admin", "user", "add", member_name, "--format", "json"))["token"]
    member = FuncXClient(service, access_token=member_tok)
    member.throttling_enabled = False
    outsider = FuncXClient(service, access_token=ok_json(
        fx("admin", "user", "add", _name("outsider"), "--format", "json"))["token"])

    gname = _name("lab")
    created = ok_json(fx("group", "create", gname, "--description", "a lab", "--format", "json"))
    gid = created["group_id"]
    assert created["name"] == gname
    p = fx("group", "add-member", gid, member_name)
    assert p.returncode == 0 and member_name in p.stdout, p.stderr
    rows = {g["group_id"]: g for g in ok_json(fx("group", "list", "--format", "json"))}
    assert rows[gid]["name"] == gname and rows[gid]["owner"] == owner["user_id"]
    assert int(rows[gid]["members"]) == 2
    assert gid in {g["group_id"] for g in member.get_groups()}
    assert gid not in {g["group_id"] for g in outsider.get_groups()}

    fid = fxc.register_function(double, function_name=_name("shared_double"), group=gid)
    assert member.get_function(fid)["group"] == gid
    with pytest.raises(FuncxAPIError) as e:
        outsider.get_function(fid)
    assert e.value.http_status == 404

    # the member runs it on a public endpoint, for real, and the task is theirs alone
    tid = member.run(21, endpoint_id=public_ep, function_id=fid)
    assert member.wait([tid], timeout=60)[tid]["result"] == 42
    with pytest.raises(FuncxAPIError) as e:
        fxc.web_client.get(f"/v2/tasks/{tid}")
    assert e.value.http_status == 404
    with pytest.raises(FuncxAPIError) as e:
        member.delete_function(fid)
    assert e.value.http_status == 403

    # an unknown user is answered as a known one would be (no existence oracle)
    # and nobody joins
    before = {g["group_id"]: g for g in ok_json(fx("group", "list", "--format", "json"))}
    nobody = _name("nobody")
    bad = fx("group", "add-member", gid, nobody)
    assert bad.returncode == 0 and nobody in bad.stdout, bad.stderr
    after = {g["group_id"]: g for g in ok_json(fx("group", "list", "--format", "json"))}
    assert after[gid]["members"] == before[gid]["members"]
    p = fx("group", "remove-member", gid, member_name)
    assert p.returncode == 0 and member_name in p.stdout, p.stderr
    rows = {g["group_id"]: g for g in ok_json(fx("group", "list", "--format", "json"))}
    assert int(rows[gid]["members"]) == 1
    assert gid not in {g["group_id"] for g in member.get_groups()}
    for call in (lambda: member.get_function(fid),
                 lambda: member.run(21, endpoint_id=public_ep, function_id=fid)):
        with pytest.raises(FuncxAPIError) as e:
            call()
        assert e.value.http_status == 404
    # what they ran before stays theirs
    assert member.get_task(tid)["result"] == 42
