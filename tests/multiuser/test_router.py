"""The parent's router without root: a task it cannot place fails alone with
its specific code, typed for the SDK, and audited; and `funcx-endpoint
configure --multi-user` / `list` as the administrator sees them."""
from __future__ import annotations

import json
import uuid

from typer.testing import CliRunner

from endpoint.multiuser import configure, site_config
from endpoint.multiuser.audit import read
from endpoint.multiuser.router import Router
from funcx.errors import IdentityUnmapped, UserEndpointConfigInvalid, UserEndpointLimit
from funcx.protocol import error_codes
from funcx.protocol.messages import Task
from funcx.serialize import FuncXSerializer


def _id() -> str:
    return str(uuid.uuid4())


def _allow_nobody(cfg: site_config.SiteConfig) -> site_config.SiteConfig:
    """The explicit allow these tests need: they map to ``nobody`` (an account
    every host has), which the defaults refuse by name and by uid (65534)."""
    cfg.denied_accounts = ("root",)
    cfg.max_uid = 65534
    return cfg


def test_unplaceable_tasks_fail_alone_with_their_codes(tmp_path):
    configure.write(tmp_path / "ep", "site", tmp_path)
    (tmp_path / "ep" / site_config.MAPPING_FILE).write_text(json.dumps({
        "DATA_TYPE": "expression_identity_mapping#1.0.0",
        "mappings": [{"source": "{username}", "match": "alice", "output": "nobody"}]}))
    cfg = _allow_nobody(site_config.load(tmp_path / "ep"))
    cfg.max_children_per_user = 0  # nobody (uid 65534) may have no child: the limit refuses
    out: list = []
    router = Router(cfg, out.extend, tmp_path / "run", tmp_path / "logs", 0.5, 3.0, 0)
    fid = _id()
    alice = {"id": "1", "username": "alice"}
    tasks = {
        error_codes.IDENTITY_UNMAPPED: Task(_id(), fid, "p"),  # no identity at all
        "mallory": Task(_id(), fid, "p", identity={"id": "2", "username": "mallory"}),
        error_codes.USER_ENDPOINT_CONFIG_INVALID: Task(_id(), fid, "p", identity=alice,
                                                       user_endpoint_config={"workers": 99}),
        error_codes.USER_ENDPOINT_LIMIT: Task(_id(), fid, "p", identity=alice),
    }
    try:
        router.submit(list(tasks.values()))
    finally:
        router.close()
    got = {r.task_id: r for r in out}
    assert len(got) == 4 and all(r.status == "failed" for r in got.values())
    for key, t in tasks.items():
        code = error_codes.IDENTITY_UNMAPPED if key == "mallory" else key
        assert got[t.task_id].details["error_code"] == code
    kinds = {error_codes.IDENTITY_UNMAPPED: IdentityUnmapped,
             error_codes.USER_ENDPOINT_CONFIG_INVALID: UserEndpointConfigInvalid,
             error_codes.USER_ENDPOINT_LIMIT: UserEndpointLimit}
    for code, kind in kinds.items():
        exc = FuncXSerializer().deserialize(got[tasks[code].task_id].exc_data)
        assert isinstance(exc, kind) and exc.code == code
    assert "workers" in got[tasks[error_codes.USER_ENDPOINT_CONFIG_INVALID].task_id].data
    audit = read(cfg.directory / "audit.log")
    refused = [a for a in audit if a["event"] == "refused"]
    assert {a["task_id"] for a in refused} == {t.task_id for t in tasks.values()}
    assert {a["identity"] for a in refused} == {None, "mallory", "alice"}
    assert not router.children


def test_configure_multi_user_and_list(funcx_home):
    from endpoint.cli import app

    name = f"mu-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()
    res = runner.invoke(app, ["configure", name, "--multi-user"])
    assert res.exit_code == 0, res.output
    for f in ("multi_user.yaml", "identity_mapping.json", "user_config_template.yaml.j2",
              "user_config_schema.json", f"funcx-endpoint-{name}.service"):
        assert f"{funcx_home / name / f}" in res.output
    again = runner.invoke(app, ["configure", name, "--multi-user"])
    assert again.exit_code != 0 and "already configured" in again.output
    listed = runner.invoke(app, ["list", "--format", "json"])
    row = [r for r in json.loads(listed.output) if r["name"] == name][0]
    assert row["multi_user"] is True and row["children"] == []
    table = runner.invoke(app, ["list"])
    assert "(multi-user)" in table.output
    logs = runner.invoke(app, ["logs", name, "--child", "../../etc/passwd"])
    assert logs.exit_code != 0 and "invalid child name" in logs.output


def test_external_program_decides_at_the_parent(tmp_path):
    """With a mapping program only the parent can decide: the service publishes
    no rules, and the parent refuses what the program does not map."""
    prog = tmp_path / "map.py"
    prog.write_text(
        "import json, sys\n"
        "i = json.load(sys.stdin)['identities'][0]\n"
        "out = [{'id': i['id'], 'output': 'nobody'}] if i['username'] == 'alice' else []\n"
        "print(json.dumps({'DATA_TYPE': 'identity_mapping_output#1.0.0', 'result': out}))\n")
    import sys

    configure.write(tmp_path / "ep", "site", tmp_path)
    (tmp_path / "ep" / site_config.MAPPING_FILE).write_text(json.dumps({
        "DATA_TYPE": "external_identity_mapping#1.0.0", "command": [sys.executable, str(prog)]}))
    cfg = _allow_nobody(site_config.load(tmp_path / "ep"))
    assert "identity_mapping" not in cfg.published()  # the service cannot decide
    cfg.max_children_per_user = 0
    out: list = []
    router = Router(cfg, out.extend, tmp_path / "run", tmp_path / "logs", 0.5, 3.0, 0)
    fid = _id()
    mallory = Task(_id(), fid, "p", identity={"id": "2", "username": "mallory"})
    alice = Task(_id(), fid, "p", identity={"id": "1", "username": "alice"})
    try:
        router.submit([mallory, alice])
    finally:
        router.close()
    codes = {r.task_id: r.details["error_code"] for r in out}
    assert codes[mallory.task_id] == error_codes.IDENTITY_UNMAPPED
    # alice was mapped (to nobody) by the program; only the limit stopped her
    assert codes[alice.task_id] == error_codes.USER_ENDPOINT_LIMIT


def test_a_child_that_cannot_start_fails_its_task_alone(tmp_path):
    configure.write(tmp_path / "ep", "site", tmp_path)
    (tmp_path / "ep" / site_config.MAPPING_FILE).write_text(json.dumps({
        "DATA_TYPE": "expression_identity_mapping#1.0.0",
        "mappings": [{"source": "{username}", "match": "alice", "output": "nobody"}]}))
    cfg = _allow_nobody(site_config.load(tmp_path / "ep"))
    cfg.child_python = str(tmp_path / "no-such-python")
    out: list = []
    router = Router(cfg, out.extend, tmp_path / "run", tmp_path / "logs", 0.5, 3.0, 0)
    t = Task(_id(), _id(), "p", identity={"id": "1", "username": "alice"})
    try:
        router.submit([t])
        assert not router.children  # nothing half-started is kept
    finally:
        router.close()
    assert [r.details["error_code"] for r in out] == [error_codes.USER_ENDPOINT_START_FAILED]
    assert "child_python" in out[0].data
