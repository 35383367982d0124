"""Pure checks of multi-user endpoints (default suite, no root needed): the
identity mapping rules, the external mapping program's JSON in/out, the user
config schema and the sandboxed template, the service's submit-time check."""
from __future__ import annotations

import functools
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from endpoint.multiuser import configure, render, site_config
from endpoint.multiuser.mapper import Mapper, Unmapped, run_program
from funcx.protocol import error_codes
from funcx.protocol import identity_mapping as im
from funcx.protocol.user_config import UserConfigError, validate

ALICE = {"id": "6f1c0e3a-0000-4000-8000-000000000001", "username": "alice@uni.edu"}


def _rules(*mappings: dict) -> im.Mapping:
    return im.parse({"DATA_TYPE": im.EXPRESSION, "mappings": list(mappings)})


def test_expression_rule_with_captures():
    m = _rules({"source": "{username}", "match": r"(.*)@uni\.edu", "output": "{0}"})
    assert im.map_by_rules(m, ALICE) == "alice"
    assert im.map_by_rules(m, {"id": "x", "username": "alice@other.org"}) is None
    # the match is whole: a suffix does not sneak through
    assert im.map_by_rules(m, {"id": "x", "username": "alice@uni.edu.evil"}) is None


def test_rules_in_order_ignore_case_literal_and_bad_accounts():
    m = im.parse([
        {"DATA_TYPE": im.EXPRESSION, "mappings": [
            {"source": "{username}", "match": "ADMIN@UNI.EDU", "output": "ops",
             "ignore_case": True, "literal": True},
            {"source": "{username}", "match": "(.*)@uni.edu", "output": "{0}"}]}])
    assert im.map_by_rules(m, {"id": "1", "username": "admin@uni.edu"}) == "ops"
    assert im.map_by_rules(m, ALICE) == "alice"
    # an output that is no account name (path, shell syntax) maps nothing
    assert im.map_by_rules(m, {"id": "1", "username": "../etc@uni.edu"}) is None
    assert im.map_by_rules(m, {"id": "1", "username": "a;rm -rf /@uni.edu"}) is None


@pytest.mark.parametrize("doc, words", [
    ({"DATA_TYPE": "nope"}, "DATA_TYPE"),
    ({"DATA_TYPE": im.EXPRESSION, "mappings": []}, "non-empty list"),
    ({"DATA_TYPE": im.EXPRESSION, "mappings": [{"source": "{email2}", "match": "x",
                                                "output": "x"}]}, "source field"),
    ({"DATA_TYPE": im.EXPRESSION, "mappings": [{"source": "{id}", "match": "(",
                                                "output": "x"}]}, "regular expression"),
    ({"DATA_TYPE": im.EXTERNAL, "command": "prog"}, "list of strings"),
    ({"DATA_TYPE": im.EXPRESSION, "mappings": [{"source": "{username:>2000000000}",
                                                "match": "x", "output": "x"}]}, "format spec"),
    ({"DATA_TYPE": im.EXPRESSION, "mappings": [{"source": "{id}", "match": "(x)",
                                                "output": "{0!r}"}]}, "format spec"),
    ({"DATA_TYPE": im.EXPRESSION, "mappings": [{"source": "{id}", "match": "x" * 257,
                                                "output": "x"}]}, "over 256"),
])
def test_bad_mapping_documents_are_refused_with_the_reason(doc, words):
    with pytest.raises(im.MappingConfigError, match=words):
        im.parse(doc)


def test_a_long_filled_source_matches_nothing():
    m = _rules({"source": "{username}", "match": "(.*)", "output": "x"})
    assert im.map_by_rules(m, {"id": "1", "username": "a"}) == "x"
    assert im.map_by_rules(m, {"id": "1", "username": "a" * (im.MAX_TEXT + 1)}) is None


def test_external_program_json_in_and_out(tmp_path):
    prog = tmp_path / "map.py"
    prog.write_text(
        "import json, sys\n"
        "doc = json.load(sys.stdin)\n"
        "assert doc['DATA_TYPE'] == 'identity_mapping_input#1.0.0'\n"
        "i = doc['identities'][0]\n"
        "out = [{'id': i['id'], 'output': i['username'].split('@')[0]}] "
        "if i['username'].endswith('@uni.edu') else []\n"
        "print(json.dumps({'DATA_TYPE': 'identity_mapping_output#1.0.0', 'result': out}))\n")
    cmd = (sys.executable, str(prog))
    assert run_program(cmd, ALICE, 10) == "alice"
    assert run_program(cmd, {"id": "2", "username": "eve@evil.org"}, 10) is None
    # an answer for another id is not taken
    assert im.program_output({"DATA_TYPE": im.OUTPUT, "result": [{"id": "other",
                                                                   "output": "root"}]},
                             ALICE) is None
    assert not im.parse({"DATA_TYPE": im.EXTERNAL, "command": list(cmd)}).service_decidable


def _site(tmp_path: Path, mapping: object) -> site_config.SiteConfig:
    configure.write(tmp_path / "ep", "site", tmp_path)
    (tmp_path / "ep" / site_config.MAPPING_FILE).write_text(json.dumps(mapping))
    return site_config.load(tmp_path / "ep")


def test_mapper_refuses_root_system_and_missing_accounts(tmp_path):
    cfg = _site(tmp_path, {"DATA_TYPE": im.EXPRESSION, "mappings": [
        {"source": "{username}", "match": "(.*)", "output": "{0}"}]})
    mapper = Mapper(cfg)
    with pytest.raises(Unmapped, match="denied"):
        mapper.map({"id": "1", "username": "root"})
    with pytest.raises(Unmapped, match="min_uid"):
        mapper.map({"id": "2", "username": "daemon"})  # uid 1 on Debian
    with pytest.raises(Unmapped, match="does not exist"):
        mapper.map({"id": "3", "username": "no-such-account-xyz"})


def test_configure_writes_the_files_and_they_load(tmp_path):
    written = configure.write(tmp_path / "ep", "site", tmp_path / "home")
    names = {p.name for p in written}
    assert {"config.py", "multi_user.yaml", "identity_mapping.json",
            "user_config_template.yaml.j2", "user_config_schema.json",
            "funcx-endpoint-site.service"} <= names
    for p in written:  # the site's settings are the administrator's alone
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    unit = (tmp_path / "ep" / "funcx-endpoint-site.service").read_text()
    assert "ExecStart=" in unit and "-m endpoint.daemon site" in unit
    cfg = site_config.load(tmp_path / "ep")
    assert cfg.published()["multi_user"] is True
    assert cfg.published()["identity_mapping"][0]["DATA_TYPE"] == im.EXPRESSION


def test_site_config_errors_name_the_file(tmp_path):
    configure.write(tmp_path / "ep", "site", tmp_path)
    (tmp_path / "ep" / "user_config_schema.json").write_text('{"type": 7}')
    with pytest.raises(site_config.SiteConfigError, match="user_config_schema.json"):
        site_config.load(tmp_path / "ep")
    (tmp_path / "ep" / "user_config_schema.json").write_text("{}")
    (tmp_path / "ep" / "user_config_template.yaml.j2").write_text("workers: {{ x")
    with pytest.raises(site_config.SiteConfigError, match="user_config_template"):
        site_config.load(tmp_path / "ep")


SCHEMA = configure.SCHEMA


def test_schema_refuses_values_outside_it_naming_the_field():
    assert validate({"workers": 3}, SCHEMA) == {"workers": 3}
    with pytest.raises(UserConfigError, match="workers.*greater than the maximum"):
        validate({"workers": 99}, SCHEMA)
    with pytest.raises(UserConfigError, match="Additional properties"):
        validate({"worker_init": "curl evil | sh"}, SCHEMA)


def test_template_values_are_data_never_syntax():
    # a schema that lets any string through: the template still cannot be escaped
    loose = {"type": "object", "properties": {"working_dir": {"type": "string"}}}
    out = render.render(configure.TEMPLATE, loose,
                        {"working_dir": "x\nworkers: 1000\n__import__('os')"})
    assert out["working_dir"] == "x\nworkers: 1000\n__import__('os')"
    assert out["workers"] == 2  # the template's default, not the injected line
    # the sandbox refuses attribute games
    with pytest.raises(render.TemplateError):
        render.render("workers: {{ ''.__class__.__mro__[1].__subclasses__() }}", {}, {})
    # a rendered option outside its range is refused
    with pytest.raises(render.TemplateError, match="workers"):
        render.render("workers: {{ n }}", {"type": "object"}, {"n": 0})


def test_service_refuses_unmapped_identity_and_bad_config():
    from backend.api_errors import ApiError
    from backend.multiuser import check_submit

    meta = {"multi_user": True, "user_config_schema": SCHEMA,
            "identity_mapping": [{"DATA_TYPE": im.EXPRESSION, "mappings": [
                {"source": "{username}", "match": "(alice|bob)", "output": "{0}"}]}]}
    ep = {"metadata": json.dumps(meta)}
    # run only for an endpoint whose owner is a multi-user administrator (trusted)
    submit = functools.partial(check_submit, trusted=True)
    who, values = submit(ep, "e", {"id": "1", "username": "alice"}, {"workers": 2})
    assert who == {"id": "1", "username": "alice"} and values == {"workers": 2}
    with pytest.raises(ApiError) as e:
        submit(ep, "e", {"id": "2", "username": "mallory"}, None)
    assert (e.value.status, e.value.code) == (403, error_codes.IDENTITY_UNMAPPED)
    with pytest.raises(ApiError) as e:
        submit(ep, "e", {"id": "1", "username": "alice"}, {"workers": 100})
    assert (e.value.status, e.value.code) == (400, error_codes.USER_ENDPOINT_CONFIG_INVALID)
    assert "workers" in e.value.message
    # not multi-user: the config is ignored as before and no identity is written
    assert check_submit({"metadata": "{}"}, "e", {"id": "1", "username": "x"},
                        {"a": 1}) == ({}, {})
    # an owner who is no administrator: nothing of theirs runs here, the endpoint decides
    assert check_submit(ep, "e", {"id": "2", "username": "mallory"}, {"workers": 100},
                        trusted=False) == ({"id": "2", "username": "mallory"}, {"workers": 100})


def test_task_entry_carries_identity_and_config():
    from funcx.protocol.messages import Task
    from funcx.protocol.streams import decode_task_entry, encode_task_batch

    t = Task("6f1c0e3a-0000-4000-8000-000000000001", "6f1c0e3a-0000-4000-8000-000000000002",
             "p", identity={"id": "1", "username": "alice"},
             user_endpoint_config={"workers": 2})
    back = decode_task_entry(encode_task_batch([t]))[0]
    assert back.identity == {"id": "1", "username": "alice"}
    assert back.user_endpoint_config == {"workers": 2}


def test_a_remote_ref_in_a_schema_is_never_fetched():
    """jsonschema >= 4.18 (pinned, review M7) resolves no remote $ref: the schema
    fails as unusable and nothing is requested from the address it names."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            hits.append(self.path)
            body = b'{"type": "object"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        schema = {"$ref": f"http://127.0.0.1:{srv.server_address[1]}/schema.json"}
        with pytest.raises(UserConfigError, match="cannot be applied"):
            validate({"a": 1}, schema)
    finally:
        srv.shutdown()
        srv.server_close()
    assert hits == []


def test_default_bounds_refuse_privileged_groups_high_uids_and_nobody():
    """Review M2: max_uid, privileged groups (gid 0 too) and nobody are refused by
    default; each bound names itself."""
    from endpoint.multiuser.mapper import check_account

    cfg = _defaults()
    check_account("alice", 1001, {1001: "alice", 100: "users"}, cfg)  # an ordinary user
    for groups, words in (({1001: "alice", 27: "sudo"}, "'sudo'"),
                          ({1001: "alice", 10: "wheel"}, "'wheel'"),
                          ({1001: "alice", 999: "docker"}, "'docker'"),
                          ({1001: "alice", 4: "adm"}, "'adm'"),
                          ({0: "root"}, "'root'"),
                          ({0: "0"}, "'0'")):  # gid 0 whatever its name
        with pytest.raises(Unmapped, match=f"group {words}"):
            check_account("alice", 1001, groups, cfg)
    with pytest.raises(Unmapped, match="max_uid 60000"):
        check_account("svc", 65000, {65000: "svc"}, cfg)
    with pytest.raises(Unmapped, match="denied"):
        check_account("nobody", 1001, {1001: "x"}, cfg)
    # each is the site's to change
    cfg.denied_groups = ("wheel",)
    cfg.max_uid = 70000
    check_account("alice", 1001, {1001: "alice", 999: "docker"}, cfg)
    check_account("svc", 65000, {65000: "svc"}, cfg)
    check_account("alice", 1001, {0: "root"}, cfg)


def _defaults() -> site_config.SiteConfig:
    return site_config.SiteConfig(Path("/nonexistent"), _rules(
        {"source": "{username}", "match": "(.*)", "output": "{0}"}), "", {})


def test_nobody_is_refused_unless_the_site_allows_it(tmp_path):
    import grp
    import pwd

    cfg = _site(tmp_path, {"DATA_TYPE": im.EXPRESSION, "mappings": [
        {"source": "{username}", "match": "(.*)", "output": "{0}"}]})
    assert "nobody" in cfg.denied_accounts and cfg.max_uid == 60000
    with pytest.raises(Unmapped, match="denied"):
        Mapper(cfg).map({"id": "1", "username": "nobody"})
    # allowed by name only: its uid (65534) is still above max_uid
    site = tmp_path / "ep" / site_config.FILE
    site.write_text(site.read_text().replace("denied_accounts: [nobody, root]",
                                             "denied_accounts: [root]"))
    cfg = site_config.load(tmp_path / "ep")
    with pytest.raises(Unmapped, match="max_uid"):
        Mapper(cfg).map({"id": "1", "username": "nobody"})
    site.write_text(site.read_text().replace("max_uid: 60000", "max_uid: 65534"))
    cfg = site_config.load(tmp_path / "ep")
    nobody = pwd.getpwnam("nobody")
    assert Mapper(cfg).map({"id": "1", "username": "nobody"}).uid == nobody.pw_uid
    # and its group, once denied, refuses it again (a real group lookup)
    cfg.denied_groups = (grp.getgrgid(nobody.pw_gid).gr_name,)
    with pytest.raises(Unmapped, match="denied_groups"):
        Mapper(cfg).map({"id": "1", "username": "nobody"})


def test_max_uid_below_min_uid_is_refused(tmp_path):
    configure.write(tmp_path / "ep", "site", tmp_path)
    site = tmp_path / "ep" / site_config.FILE
    site.write_text(site.read_text().replace("max_uid: 60000", "max_uid: 10"))
    with pytest.raises(site_config.SiteConfigError, match="max_uid"):
        site_config.load(tmp_path / "ep")
    site.write_text(site.read_text().replace("max_uid: 10", "max_uid: 60000")
                    .replace("denied_groups: [", "denied_groups: [7, "))
    with pytest.raises(site_config.SiteConfigError, match="denied_groups"):
        site_config.load(tmp_path / "ep")


@pytest.mark.parametrize("body, words", [
    ("sys.stdout.buffer.write(b'\\xff\\xfe not utf-8')", "not UTF-8"),
    ("print('[' * 30000 + ']' * 30000)", "not JSON"),
    ("print(json.dumps({'DATA_TYPE': 'identity_mapping_output#1.0.0', 'result': 7}))", None),
    ("print(json.dumps({'DATA_TYPE': 'identity_mapping_output#1.0.0', "
     "'result': 'alice'}))", None),
    ("sys.stdout.write('x' * 10_000_000)", "printed over 65536 bytes"),
    ("sys.exit(3)", "exited 3"),
    ("import time; time.sleep(60)", "took over 1s"),
])
def test_a_misbehaving_mapping_program_maps_nothing(tmp_path, caplog, body, words):
    """Review L4: whatever the program does, the answer is "unmapped" (logged),
    never an exception, an unbounded read or a wait past mapping_timeout_s."""
    import time

    prog = tmp_path / "map.py"
    prog.write_text(f"import json, sys\nsys.stdin.read()\n{body}\n")
    t0 = time.monotonic()
    with caplog.at_level("ERROR", logger="funcx.multiuser.mapper"):
        assert run_program((sys.executable, str(prog)), ALICE, 1.0) is None
    assert time.monotonic() - t0 < 5
    if words:
        assert words in caplog.text
    # through the Mapper too: Unmapped with the reason, never another exception
    cfg = _site(tmp_path, {"DATA_TYPE": im.EXTERNAL, "command": [sys.executable, str(prog)]})
    cfg.mapping_timeout_s = 1.0
    with pytest.raises(Unmapped, match="no mapping"):
        Mapper(cfg).map(ALICE)


def test_the_mapping_cache_is_bounded(tmp_path, monkeypatch):
    from endpoint.multiuser import mapper as mapper_mod

    monkeypatch.setattr(mapper_mod, "CACHE_MAX", 8)
    cfg = _site(tmp_path, {"DATA_TYPE": im.EXPRESSION, "mappings": [
        {"source": "{username}", "match": "(.*)", "output": "{0}"}]})
    m = Mapper(cfg)
    for i in range(50):
        with pytest.raises(Unmapped):
            m.map({"id": str(i), "username": f"no-such-account-{i}"})
        assert len(m._cache) <= 8
    # the newest stay cached
    assert (("id", "49"), ("username", "no-such-account-49")) in m._cache


def test_a_childs_log_is_printed_without_control_characters(funcx_home):
    """Review L7: a child's log holds its user's bytes; `logs --child` shows
    terminal escapes and other control characters escaped."""
    import uuid

    from typer.testing import CliRunner

    from endpoint.cli import app
    from endpoint.multiuser.log_text import printable
    from endpoint.multiuser.parent import CHILD_LOG_DIR

    assert printable("ok\tline\n") == "ok\tline\n"
    assert printable("\x1b]0;owned\x07\r\x08\x9b2J") == "\\x1b]0;owned\\x07\\x0d\\x08\\x9b2J"
    name = f"mu-log-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()
    assert runner.invoke(app, ["configure", name, "--multi-user"]).exit_code == 0
    logs = funcx_home / name / CHILD_LOG_DIR
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "alice-0123.log").write_text("task ran\n\x1b[2J\x1b]0;pwned\x07evil\r\n")
    res = runner.invoke(app, ["logs", name, "--child", "alice-0123"])
    assert res.exit_code == 0, res.output
    assert "task ran\n" in res.output and "\\x1b[2J\\x1b]0;pwned\\x07evil\n" in res.output
    assert "\x1b" not in res.output and "\x07" not in res.output and "\r" not in res.output
