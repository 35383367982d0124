"""The ``funcx`` command line, as a user drives it: every command in process
(Typer's CliRunner) and as a real subprocess, against the session's real
service and endpoint.  Checks the documented ``--format json`` keys, every
exit code (0 ok, 1 failed, 2 usage, 3 not found, 4 not logged in / not
allowed, 5 unreachable), one-line errors without a Python traceback unless
``--debug``, and an ``Example:`` in every ``--help``."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest
import requests
import typer
from typer.testing import CliRunner

from funcx_cli.main import app

runner = CliRunner(env={"COLUMNS": "200"})  # wide tables: ids unfolded
TAG = uuid.uuid4().hex[:8]  # unique function names: other modules share the service


def cli(*args: str, input: str | None = None, env: dict | None = None):
    """``funcx ARGS`` in process."""
    return runner.invoke(app, list(args), input=input, env=env)


def sub(*args: str, input: str | None = None, env: dict | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """``funcx ARGS`` as a real process (inherits FUNCX_HOME from conftest)."""
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args], input=input,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def one_line_error(stderr: str) -> str:
    """The error text, asserting it is one line and carries no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FUNCTIONS = '''
def describe(*args, **kwargs):
    """What it was called with, and the argument types."""
    return {"args": [[type(a).__name__, a] for a in args], "kwargs": kwargs}


def boom(x):
    raise ValueError(f"boom {x}")


def square(x):
    import time  # self-contained: imports inside the body
    time.monotonic()
    return x * x
'''


@pytest.fixture(scope="module")
def fns(tmp_path_factory, service, endpoint):
    """Functions registered with ``funcx function register FILE:FUNC``: name -> id."""
    path = tmp_path_factory.mktemp("cli") / "my_functions.py"
    path.write_text(FUNCTIONS)
    out = {}
    for fn in ("describe", "boom", "square"):
        name = f"cli-{fn}-{TAG}"
        r = cli("function", "register", f"{path}:{fn}", "--name", name, "--format", "json")
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["function_name"] == name
        out[fn] = str(uuid.UUID(doc["function_id"]))
    out["path"] = path
    return out


@pytest.fixture(scope="module")
def other_ep(fxc):
    """An endpoint with no agent: tasks wait there, and restricting it leaves
    the shared endpoint unrestricted."""
    name = f"cli-offline-{TAG}"
    return {"name": name, "id": fxc.register_endpoint(name)["endpoint_id"]}


# ------------------------------------------------------------------ help
def _commands(group, prefix: tuple[str, ...] = ()):
    for name, cmd in group.commands.items():
        yield prefix + (name,)
        if getattr(cmd, "commands", None):  # a group (Typer's own click types)
            yield from _commands(cmd, prefix + (name,))


ALL_COMMANDS = sorted(_commands(typer.main.get_command(app)))
GROUPS = {("service",), ("function",), ("task",), ("endpoint",)}  # the groups of the CLI issue
_ROOT = typer.main.get_command(app)


def _is_group(command: tuple[str, ...]) -> bool:
    cmd = _ROOT
    for name in command:
        cmd = cmd.commands[name]
    return bool(getattr(cmd, "commands", None))


HELP_COMMANDS = [c for c in ALL_COMMANDS if not _is_group(c) or c in GROUPS]


def test_every_required_command_exists():
    required = {("service", c) for c in ("start", "stop", "status", "logs")} | {
        ("demo",), ("login",), ("logout",), ("whoami",), ("run",), ("map",)} | {
        ("function", c) for c in ("register", "list", "show", "search", "delete")} | {
        ("task", c) for c in ("status", "result", "cancel", "list", "watch")} | {
        ("endpoint", c) for c in ("list", "show", "status", "allow", "disallow")}
    assert required <= set(ALL_COMMANDS)


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=" ".join)
def test_help_has_an_example(command):
    """Every command, and the command groups of the CLI issue."""
    r = cli(*command, "--help")
    assert r.exit_code == 0, r.output
    assert "Example:" in r.stdout


def test_help_as_a_process():
    top = sub("--help")
    assert top.returncode == 0 and "Example:" in top.stdout
    for group in ("service", "function", "task", "endpoint"):
        assert group in top.stdout
    p = sub("run", "--help")
    assert p.returncode == 0 and "Example:" in p.stdout and "--endpoint" in p.stdout


# --------------------------------------------------------------- service
def test_service_status_json(service):
    p = sub("service", "status", "--format", "json")
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert {"running", "url", "pid", "responding", "logs"} <= st.keys()
    assert st["running"] and st["responding"] and st["url"] == service
    r = cli("service", "status")
    assert r.exit_code == 0 and f"running at {service}" in r.stdout


def test_service_logs(service):
    r = cli("service", "logs", "supervisor", "-n", "5")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) <= 5
    r = cli("service", "logs", "no-such-component")
    assert r.exit_code == 3 and "no log" in r.stderr


def test_service_start_when_running_says_so(service):
    r = cli("service", "start", "--detach")
    assert r.exit_code == 1 and "already running" in r.stderr and service in r.stderr


def test_service_start_status_stop_in_a_fresh_home(tmp_path, service):
    env = {"FUNCX_HOME": str(tmp_path / "home"), "FUNCX_RQ_WORKERS": "1"}
    p = sub("service", "status", "--format", "json", env=env)
    assert p.returncode == 1 and json.loads(p.stdout)["running"] is False
    try:
        p = sub("service", "start", "--detach", "--port", "0", env=env)
        assert p.returncode == 0, p.stderr
        url = p.stdout.strip()
        assert url.startswith("http://127.0.0.1:") and url != service
        st = json.loads(sub("service", "status", "--format", "json", env=env).stdout)
        assert st["running"] and st["responding"] and st["url"] == url
        # the fresh service wrote this home's credentials: whoami works there
        me = json.loads(sub("whoami", "--format", "json", env=env).stdout)
        assert me["service"] == url
    finally:
        p = sub("service", "stop", env=env)
    assert p.returncode == 0 and "Stopped" in p.stdout
    p = sub("service", "stop", env=env)
    assert p.returncode == 0 and "not running" in p.stdout
    assert requests.get(f"{service}/v2/version").ok  # the session's service is untouched


def test_demo(service, endpoint):
    r = cli("demo", "--name", "cli-test")
    assert r.exit_code == 0, r.output
    assert f"Using the running service at {service}" in r.stdout
    assert "Result: Hello, cli-test!" in r.stdout


# ----------------------------------------------------------------- auth
def test_whoami(fxc, service):
    me = fxc.whoami()
    r = cli("whoami", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"user": me["username"], "user_id": me["user_id"],
                                    "service": service}
    p = sub("whoami")
    assert p.returncode == 0 and me["user_id"] in p.stdout and service in p.stdout


def test_login_stdin_whoami_logout_revokes(tmp_path, service, fxc, redis_client):
    from backend.store import users

    uid = fxc.whoami()["user_id"]
    token = users.issue_token(redis_client, uid)
    env = {"FUNCX_HOME": str(tmp_path / "home")}  # not the session's credentials
    r = cli("--service", service, "login", input=token + "\n", env=env)
    assert r.exit_code == 0, r.output
    assert f"Logged in to {service}" in r.stdout
    stored = json.loads((tmp_path / "home" / "credentials" / "token.json").read_text())
    assert stored["token"] == token and stored["user_id"] == uid
    # later commands talk to the service the token was issued by
    r = cli("whoami", "--format", "json", env=env)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["user_id"] == uid
    assert json.loads(r.stdout)["service"] == service
    r = cli("logout", env=env)
    assert r.exit_code == 0 and "Logged out" in r.stdout
    assert not (tmp_path / "home" / "credentials" / "token.json").exists()
    resp = requests.get(f"{service}/v2/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    r = cli("--service", service, "whoami", env=env)
    assert r.exit_code == 4 and "funcx login" in r.stderr
    r = cli("logout", env=env)
    assert r.exit_code == 0 and "Not logged in" in r.stdout
    assert fxc.whoami()["user_id"] == uid  # the session's own token still works


def test_login_token_file_as_a_process(tmp_path, service, fxc, redis_client):
    from backend.store import users

    me = fxc.whoami()
    token = users.issue_token(redis_client, me["user_id"])
    tf = tmp_path / "my.token"
    tf.write_text(token + "\n")
    env = {"FUNCX_HOME": str(tmp_path / "home")}
    p = sub("--service", service, "login", "--token-file", str(tf), "--format", "json", env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"user": me["username"], "user_id": me["user_id"],
                                    "service": service}
    p = sub("--service", service, "whoami", env=env)
    assert p.returncode == 0 and me["username"] in p.stdout
    p = sub("--service", service, "logout", env=env)
    assert p.returncode == 0, p.stderr
    assert requests.get(f"{service}/v2/whoami",
                        headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # stdin as a process too, with a fresh token
    token2 = users.issue_token(redis_client, me["user_id"])
    p = sub("--service", service, "login", input=token2 + "\n", env=env)
    assert p.returncode == 0 and "Logged in" in p.stdout, p.stderr
    p = sub("--service", service, "logout", env=env)
    assert p.returncode == 0


def test_exit_4_wrong_token_keeps_credentials(tmp_path, service, funcx_home, token):
    home = tmp_path / "home"
    (home / "credentials").mkdir(parents=True)
    creds = (funcx_home / "credentials" / "token.json").read_text()
    (home / "credentials" / "token.json").write_text(creds)  # a copy of the session's
    bad = tmp_path / "bad.token"
    bad.write_text("fx_not-a-real-token\n")
    env = {"FUNCX_HOME": str(home)}
    p = sub("--service", service, "login", "--token-file", str(bad), env=env)
    assert p.returncode == 4
    assert "does not accept this token" in one_line_error(p.stderr)
    assert (home / "credentials" / "token.json").read_text() == creds
    r = cli("--service", service, "login", "--token-file", str(bad), env=env)
    assert r.exit_code == 4


def test_exit_4_no_credentials(tmp_path, service):
    p = sub("--service", service, "whoami", env={"FUNCX_HOME": str(tmp_path / "empty")})
    assert p.returncode == 4
    assert "funcx login" in one_line_error(p.stderr)
    r = cli("--service", service, "function", "list", env={"FUNCX_HOME": str(tmp_path / "empty")})
    assert r.exit_code == 4


def test_exit_5_unreachable_and_debug_traceback(service):
    url = f"http://127.0.0.1:{closed_port()}"
    p = sub("--service", url, "whoami")
    assert p.returncode == 5
    assert "cannot reach the funcX service" in one_line_error(p.stderr)
    assert p.stdout == ""
    p = sub("--debug", "--service", url, "whoami")
    assert p.returncode != 0 and "Traceback" in p.stderr
    for args in (("endpoint", "list"), ("task", "status", str(uuid.uuid4())),
                 ("function", "search", "x", "--format", "json")):
        r = cli("--service", url, *args)
        assert r.exit_code == 5, (args, r.output)
        assert "Traceback" not in r.stderr
    r = cli("--service", url, "login", input="fx_whatever\n",
            env={"FUNCX_HOME": os.environ["FUNCX_HOME"] + "-never-written"})
    assert r.exit_code == 5


def test_exit_2_usage_errors(fns, endpoint):
    p = sub("run", fns["describe"])  # --endpoint missing
    assert p.returncode == 2 and "Traceback" not in p.stderr and "--endpoint" in p.stderr
    p = sub("run", fns["describe"], "--endpoint", endpoint, "--kwargs", "[1, 2]")
    assert p.returncode == 2 and "--kwargs must be a JSON object" in one_line_error(p.stderr)
    r = cli("run", fns["describe"], "--endpoint", endpoint, "--kwargs", "{not json")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    r = cli("whoami", "--format", "xml")
    assert r.exit_code == 2 and "--format must be text or json" in r.stderr
    r = cli("function", "register", "no-colon-here")
    assert r.exit_code == 2 and "PATH:FUNCTION" in r.stderr
    r = cli("function", "register", "/no/such/file.py:f")
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = cli("no-such-command")
    assert r.exit_code == 2
    # a missing input file is the user's mistake, not a failure
    r = cli("map", fns["square"], "--endpoint", endpoint, "--input", "/no/such/params.jsonl")
    assert r.exit_code == 2 and "no such file" in r.stderr
    r = cli("login", "--token-file", "/no/such/my.token")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    r = cli("service", "status", "--format", "xml")
    assert r.exit_code == 2


def test_exit_3_not_found(endpoint):
    missing = str(uuid.uuid4())
    p = sub("function", "show", missing)
    assert p.returncode == 3
    one_line_error(p.stderr)
    p = sub("endpoint", "status", f"no-such-endpoint-{TAG}")
    assert p.returncode == 3 and f"no-such-endpoint-{TAG}" in one_line_error(p.stderr)
    for args in (("task", "status", missing), ("task", "result", missing),
                 ("function", "show", f"no-such-function-{TAG}"), ("endpoint", "show", missing),
                 ("run", f"no-such-function-{TAG}", "--endpoint", endpoint),
                 ("task", "watch", missing)):
        r = cli(*args)
        assert r.exit_code == 3, (args, r.output)


# ------------------------------------------------------------- functions
def test_function_register_show_list_search_delete(tmp_path, fxc):
    f = tmp_path / "analysis.py"
    f.write_text(textwrap.dedent('''
        def fit(x):
            """fit a curve"""
            return x
    '''))
    name, group = f"cli-fit-{TAG}", fxc.create_group(f"cli-lab-{TAG}")
    p = sub("function", "register", f"{f}:fit", "--name", name, "--public", "--group", group)
    assert p.returncode == 0, p.stderr
    fid = p.stdout.strip()
    assert str(uuid.UUID(fid)) == fid
    r = cli("function", "show", name, "--format", "json")  # by name
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["function_uuid"] == fid and doc["function_name"] == name
    assert doc["description"] == "fit a curve" and doc["public"] is True and doc["group"] == group
    assert "function_code" not in doc
    r = cli("function", "show", fid, "--code", "--format", "json")
    assert r.exit_code == 0 and "function_code" in json.loads(r.stdout)
    r = cli("function", "show", fid)
    assert r.exit_code == 0 and name in r.stdout
    r = cli("function", "list", "--format", "json")
    assert r.exit_code == 0
    listed = {h["function_uuid"]: h for h in json.loads(r.stdout)}
    assert fid in listed and listed[fid]["function_name"] == name
    # a function registered searchable=False is in no search, but is still yours to list
    def hidden_fn(x):
        return x

    hidden = fxc.register_function(hidden_fn, function_name=f"hidden-{name}", searchable=False)
    r = cli("function", "list", "--format", "json")
    assert hidden in {h["function_uuid"] for h in json.loads(r.stdout)}
    r = cli("function", "list")
    assert r.exit_code == 0 and fid in r.stdout
    p = sub("function", "search", name, "--format", "json")
    assert p.returncode == 0, p.stderr
    found = json.loads(p.stdout)
    assert found["total"] == 1 and [h["function_uuid"] for h in found["results"]] == [fid]
    r = cli("function", "search", "curve")
    assert r.exit_code == 0 and fid in r.stdout
    r = cli("function", "register", f"{f}:fit", "--group", "not-a-uuid")
    assert r.exit_code == 2
    r = cli("function", "register", f"{f}:nope")
    assert r.exit_code == 2 and "no function 'nope'" in r.stderr
    r = cli("function", "delete", name)
    assert r.exit_code == 0 and fid in r.stdout
    assert cli("function", "show", fid).exit_code == 3
    assert cli("function", "delete", fid).exit_code == 3


# ----------------------------------------------------------------- run
def test_run_parses_args_and_kwargs(fns, endpoint):
    args = ("1", "[1, 2]", "hello", '{"k": null}', "2.5", "true")
    expected = {"args": [["int", 1], ["list", [1, 2]], ["str", "hello"], ["dict", {"k": None}],
                         ["float", 2.5], ["bool", True]], "kwargs": {"c": 3}}
    r = cli("run", f"cli-describe-{TAG}", "--endpoint", "pytest-ep", *args,
            "--kwargs", '{"c": 3}')
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == expected
    p = sub("run", fns["describe"], "--endpoint", endpoint, *args, "--kwargs", '{"c": 3}',
            "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc.keys() == {"task_id", "status", "result"}
    assert doc["status"] == "success" and doc["result"] == expected


def test_run_short_endpoint_flag_and_plain_result(fns, endpoint):
    r = cli("run", fns["square"], "-e", endpoint, "7")
    assert r.exit_code == 0 and r.stdout == "49\n"


def test_run_failure_prints_remote_traceback_exit_1(fns, endpoint):
    p = sub("run", fns["boom"], "--endpoint", endpoint, "42")
    assert p.returncode == 1
    assert "ValueError: boom 42" in p.stderr and 'raise ValueError(f"boom {x}")' in p.stderr
    assert p.stdout == ""
    r = cli("run", fns["boom"], "--endpoint", endpoint, "7", "--format", "json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc.keys() == {"task_id", "status", "exception"}
    assert doc["status"] == "failed" and "ValueError: boom 7" in doc["exception"]


def test_run_no_wait_then_task_commands(fns, endpoint, fxc):
    r = cli("run", fns["square"], "--endpoint", endpoint, "--no-wait", "--format", "json", "6")
    assert r.exit_code == 0, r.output
    tid = json.loads(r.stdout)["task_id"]
    p = sub("run", fns["boom"], "--endpoint", endpoint, "--no-wait", "1")
    assert p.returncode == 0, p.stderr
    bad = p.stdout.strip()
    assert str(uuid.UUID(bad)) == bad
    r = cli("task", "result", tid, "--wait")  # the CLI's own waiting
    assert r.exit_code == 0 and r.stdout == "36\n"
    fxc.wait([bad], timeout=60)
    r = cli("task", "status", tid, bad, "--format", "json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [(x["task_id"], x["status"]) for x in rows] == [(tid, "success"), (bad, "failed")]
    assert all(x.keys() == {"task_id", "status", "completion_t"} and x["completion_t"]
               for x in rows)
    r = cli("task", "status", tid)
    assert r.exit_code == 0 and tid in r.stdout and "success" in r.stdout
    p = sub("task", "result", tid, bad, "--format", "json")
    assert p.returncode == 1  # one failed
    out = json.loads(p.stdout)
    assert out[0] == {"task_id": tid, "status": "success", "result": 36}
    assert out[1]["status"] == "failed" and "ValueError: boom 1" in out[1]["exception"]
    r = cli("task", "result", bad)
    assert r.exit_code == 1 and "ValueError: boom 1" in r.stderr
    r = cli("task", "cancel", tid)  # already finished: not cancelled
    assert r.exit_code == 1 and "not cancelled" in r.stdout


def test_task_cancel_a_waiting_task(fns, other_ep):
    r = cli("run", fns["square"], "--endpoint", other_ep["name"], "--no-wait", "3")
    assert r.exit_code == 0, r.output
    tid = r.stdout.strip()
    r = cli("task", "result", tid)
    assert r.exit_code == 1 and "still" in r.stderr  # pending: the endpoint has no agent
    p = sub("task", "cancel", tid)
    assert p.returncode == 0 and f"{tid}: cancelled" in p.stdout, p.stderr
    r = cli("task", "status", tid, "--format", "json")
    assert json.loads(r.stdout)[0]["status"] == "cancelled"


# ----------------------------------------------------------------- map
def test_map_three_lines_in_order_then_list_and_watch(tmp_path, fns, endpoint):
    inp = tmp_path / "params.jsonl"
    inp.write_text("[3]\n[1]\n\n[2]\n")  # blank lines are skipped
    p = sub("map", fns["square"], "--endpoint", "pytest-ep", "--input", str(inp))
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert [r["result"] for r in rows] == [9, 1, 4]
    assert all(r["status"] == "success" and r.keys() == {"index", "task_id", "status", "result"}
               for r in rows)
    tids = [r["task_id"] for r in rows]

    r = cli("task", "list", "--format", "json", "--limit", "200")
    assert r.exit_code == 0, r.output
    listed = {t["task_id"]: t for t in json.loads(r.stdout)}
    assert set(tids) <= listed.keys()
    assert {"task_id", "status", "function_id", "endpoint_id", "task_group_id",
            "created_at", "completion_t"} <= listed[tids[0]].keys()
    tg = listed[tids[0]]["task_group_id"]
    assert {listed[t]["task_group_id"] for t in tids} == {tg}

    r = cli("task", "list", "--group", tg, "--format", "json")
    assert r.exit_code == 0 and {t["task_id"] for t in json.loads(r.stdout)} == set(tids)
    r = cli("task", "list", "--group", tg, "--status", "failed", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    r = cli("task", "list", "--group", tg, "--status", "success")
    assert r.exit_code == 0 and all(t[:8] in r.stdout for t in tids)  # short ids
    r = cli("task", "list", "--status", "no-such-status")
    assert r.exit_code == 2

    p = sub("task", "watch", tg, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "3/3 done" in p.stdout
    r = cli("task", "watch", tg)
    assert r.exit_code == 0 and "3/3 done" in r.stdout


def test_map_failures_and_stdin(fns, endpoint):
    r = cli("map", fns["boom"], "--endpoint", endpoint, "--input", "-", input="[1]\n[2]\n")
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["status"] for x in rows] == ["failed", "failed"]
    assert "ValueError: boom 2" in rows[1]["exception"]
    assert "2 of 2 task(s) failed" in r.stderr
    r = cli("map", fns["square"], "--endpoint", endpoint, "--input", "-", input="[1]\nnot json\n")
    assert r.exit_code == 2 and ":2: not JSON" in r.stderr


def test_watch_a_group_still_running(fns, endpoint, fxc):
    """``task watch`` on a group whose tasks finish while it watches."""
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    for i in range(4):
        batch.add(i, endpoint_id=endpoint, function_id=fns["square"])
    fxc.batch_run(batch)
    r = cli("task", "watch", batch.task_group_id)
    assert r.exit_code == 0 and "4/4 done" in r.stdout


# -------------------------------------------------------------- endpoints
def test_endpoint_list_show_status(endpoint, fns, fxc):
    fxc.wait([fxc.run(2, endpoint_id=endpoint, function_id=fns["square"])], timeout=60)
    p = sub("endpoint", "list", "--format", "json")
    assert p.returncode == 0, p.stderr
    rows = {e["endpoint_id"]: e for e in json.loads(p.stdout)}
    assert rows[endpoint].keys() == {"name", "endpoint_id", "status", "workers",
                                     "outstanding_tasks", "public"}
    assert rows[endpoint]["name"] == "pytest-ep" and rows[endpoint]["status"] == "online"
    r = cli("endpoint", "list")
    assert r.exit_code == 0 and endpoint in r.stdout and "pytest-ep" in r.stdout

    p = sub("endpoint", "status", "pytest-ep", "--format", "json")  # by name
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)
    assert st["status"] == "online" and "details" in st
    r = cli("endpoint", "status", "pytest-ep")
    assert r.exit_code == 0 and r.stdout.startswith("online: ") and "worker(s)" in r.stdout

    r = cli("endpoint", "show", "pytest-ep", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["uuid"] == endpoint
    r = cli("endpoint", "show", endpoint)
    assert r.exit_code == 0 and "pytest-ep" in r.stdout


def test_endpoint_allow_disallow(fns, other_ep, fxc, endpoint):
    eid = other_ep["id"]
    assert fxc.get_whitelist(eid) == []
    p = sub("endpoint", "allow", other_ep["name"], fns["square"], f"cli-describe-{TAG}")
    assert p.returncode == 0, p.stderr
    assert set(fxc.get_whitelist(eid)) == {fns["square"], fns["describe"]}
    # a function not on the list is refused at submit: exit 4
    r = cli("run", fns["boom"], "--endpoint", eid, "--no-wait", "1")
    assert r.exit_code == 4 and "not allowed" in r.stderr
    r = cli("endpoint", "disallow", eid, f"cli-square-{TAG}")
    assert r.exit_code == 0, r.output
    assert fxc.get_whitelist(eid) == [fns["describe"]]
    r = cli("endpoint", "disallow", eid, fns["describe"])
    assert r.exit_code == 0 and "(all)" in r.stdout
    assert fxc.get_whitelist(eid) == []
    assert fxc.get_whitelist(endpoint) == []  # the shared endpoint stays unrestricted
