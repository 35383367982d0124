"""Listings a scientist reads (issue 16 point 7) and the CLI's small things
(point 9), against the session's real service and endpoint: ``task list``
like sacct (short ids, names, queued and run time, error type; one line per
task), short ids accepted back, ``task watch`` with counts per state, failures
grouped and a non-zero exit, ``task logs`` with what the task printed, numpy
results as JSON values, Rich markup shown literally, ``--version`` and one set
of exit codes and state words across ``funcx`` and ``funcx-endpoint``."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid

import pytest
from typer.testing import CliRunner

from endpoint.cli import app as endpoint_app
from funcx_cli.main import app

TAG = uuid.uuid4().hex[:8]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def cli(*args: str, columns: int = 200, env: dict | None = None):
    return CliRunner(env={"COLUMNS": str(columns), **(env or {})}).invoke(app, list(args))


def ep_cli(*args: str, env: dict | None = None):
    return CliRunner(env={"COLUMNS": "200", **(env or {})}).invoke(endpoint_app, list(args))


def sub(*args: str, module: str = "funcx_cli.main") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture(scope="module")
def fns(fxc, endpoint):
    def noisy(x):
        import sys

        print(f"fitting {x}")
        print(f"warning: [x] {x} is noisy", file=sys.stderr)
        if x % 2:
            raise ValueError(f"too noisy: {x}")
        return x

    def as_array(n):
        import numpy

        return {"grid": numpy.arange(n * n, dtype=numpy.float64).reshape(n, n),
                "mean": numpy.float32(1.5), "big": numpy.ones(3000)}

    return {"noisy": fxc.register_function(noisy, function_name=f"noisy-{TAG}"),
            "as_array": fxc.register_function(as_array, function_name=f"as-array-{TAG}")}


@pytest.fixture(scope="module")
def sweep(fns, fxc, tmp_path_factory):
    """``funcx map`` of noisy over 0..5: three succeed, three fail; its group and rows."""
    inp = tmp_path_factory.mktemp("sweep") / "in.jsonl"
    inp.write_text("".join(f"[{i}]\n" for i in range(6)))
    p = sub("map", f"noisy-{TAG}", "-e", "pytest-ep", "-i", str(inp))
    assert p.returncode == 1, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    group = re.search(r"task group (\S+):", p.stderr).group(1)
    return {"group": group, "rows": rows}


def test_task_list_reads_like_sacct(sweep, fxc):
    tids = [r["task_id"] for r in sweep["rows"]]
    for columns in (200, 100):  # a narrow terminal still gets one line per task
        r = cli("task", "list", "--group", sweep["group"], columns=columns)
        assert r.exit_code == 0, r.output
        assert not UUID.search(r.stdout)  # short ids, no wrapped UUIDs
        lines = r.stdout.splitlines()
        for t in tids:
            [line] = [ln for ln in lines if t[:8] in ln]
            assert f"noisy-{TAG}"[:10] in line and "pytest-ep" in line
            ok = int(sweep["rows"][tids.index(t)]["index"]) % 2 == 0
            assert ("success" in line) if ok else ("failed" in line and "ValueError" in line)
    header = next(ln for ln in cli("task", "list", "--group", sweep["group"]).stdout.splitlines()
                  if "State" in ln)
    for col in ("ID", "Function", "Endpoint", "State", "Submitted", "Queued", "Run", "Error"):
        assert col in header
    r = cli("task", "list", "--group", sweep["group"], "--format", "json")
    rows = {x["task_id"]: x for x in json.loads(r.stdout)}
    assert set(rows) == set(tids)
    for i, t in enumerate(tids):
        x = rows[t]
        assert x["function_name"] == f"noisy-{TAG}" and x["endpoint_name"] == "pytest-ep"
        assert x["exec_end"] >= x["exec_start"] >= float(x["created_at"]) - 1  # failed ones too
        if i % 2:
            assert x["error_type"] == "ValueError" and x["error"] == f"ValueError: too noisy: {i}"
        else:
            assert "error" not in x


def test_short_ids_are_accepted_back(sweep):
    first = sweep["rows"][0]["task_id"]
    r = cli("task", "status", first[:8], "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["task_id"] == first
    r = cli("task", "result", first[:10])
    assert r.exit_code == 0 and r.stdout == "0\n"
    r = cli("task", "result", "zz")
    assert r.exit_code == 2 and "not a task id" in r.stderr
    r = cli("task", "status", "ffffffff")  # no task of ours starts with it (almost surely)
    assert r.exit_code in (2, 3) and "Traceback" not in r.stderr


def test_watch_counts_states_groups_failures_and_exits_1(sweep):
    p = sub("task", "watch", sweep["group"])
    assert p.returncode == 1, p.stderr  # tasks failed: as gh run watch --exit-status
    assert "6/6 done: 3 success, 3 failed" in p.stdout
    for i in (1, 3, 5):
        assert f"ValueError: too noisy: {i}" in p.stdout
    r = cli("task", "watch", sweep["group"], "--no-exit-status")
    assert r.exit_code == 0 and "3 failed" in r.stdout


def test_task_logs_follow_the_task_document(sweep, redis_client):
    """The contract (GET /v2/tasks/ID carries optional stdout/stderr), with
    the output written into a finished task's record: ``[x]`` and a cut marker
    shown as they are, stdout on stdout, stderr on stderr."""
    from funcx.protocol import keys

    tid = sweep["rows"][2]["task_id"]
    redis_client.hset(keys.task(tid), mapping={
        "stdout": "line [x] one\n[... 10 bytes cut ...]\n", "stderr": "a [red]warning[/red]\n"})
    p = sub("task", "logs", tid[:9])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "line [x] one\n[... 10 bytes cut ...]\n"
    assert p.stderr == "a [red]warning[/red]\n"
    redis_client.hdel(keys.task(tid), "stdout", "stderr")
    p = sub("task", "logs", tid)
    assert p.returncode == 0 and p.stdout == "" and "printed nothing" in p.stderr


def test_task_logs_show_what_the_task_printed(sweep):
    """End to end: what the worker captured (endpoint/task_output.py)."""
    ok, bad = sweep["rows"][0]["task_id"], sweep["rows"][1]["task_id"]
    p = sub("task", "logs", ok)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "fitting 0\n"
    assert "warning: [x] 0 is noisy" in p.stderr
    r = cli("task", "logs", bad[:8], "--format", "json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc == {"task_id": bad, "status": "failed", "stdout": "fitting 1\n",
                   "stderr": "warning: [x] 1 is noisy\n"}


def test_task_logs_of_a_waiting_task_exit_6(fns, fxc):
    eid = fxc.register_endpoint(f"logs-offline-{TAG}")["endpoint_id"]
    tid = fxc.run(2, endpoint_id=eid, function_id=fns["noisy"])
    r = cli("task", "logs", tid)
    assert r.exit_code == 6 and "still" in r.stderr and r.stdout == ""
    fxc.cancel_task(tid)


def test_numpy_results_are_json_values(fns, endpoint):
    pytest.importorskip("numpy")
    p = sub("run", fns["as_array"], "-e", endpoint, "2", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["result"]["grid"] == [[0.0, 1.0], [2.0, 3.0]] and doc["result"]["mean"] == 1.5
    assert doc["result"]["big"] == [1.0] * 3000  # whole, never a repr cut with "…"
    p = sub("run", fns["as_array"], "-e", endpoint, "1")  # text output: JSON too
    assert p.returncode == 0 and json.loads(p.stdout)["grid"] == [[0.0]]


def test_malformed_json_arguments_exit_2_and_are_not_sent(fns, endpoint, fxc):
    before = len(fxc.list_tasks(limit=10_000))
    for bad in ("[1, 2", '{"a": 1', '"open'):
        p = sub("run", fns["noisy"], "-e", endpoint, bad)
        assert p.returncode == 2, (bad, p.stderr)
        assert "not valid JSON" in p.stderr and "Traceback" not in p.stderr
    assert len(fxc.list_tasks(limit=10_000)) == before  # nothing was submitted


def test_rich_markup_in_user_text_is_shown(fxc, tmp_path):
    name = f"[bold]lab[/bold]-{TAG}"
    fxc.register_endpoint(name)
    r = cli("endpoint", "list")
    assert r.exit_code == 0 and name in r.stdout
    path = tmp_path / "f.py"
    path.write_text('def g(x):\n    """fit [x] with [red]care[/red]"""\n    return x\n')
    r = cli("function", "register", f"{path}:g", "--name", f"g-[x]-{TAG}")
    assert r.exit_code == 0, r.output
    r = cli("function", "list")
    assert f"g-[x]-{TAG}" in r.stdout and "fit [x] with [red]care[/red]" in r.stdout


def test_version_on_both_clis():
    from funcx.version import __version__

    for module, program in (("funcx_cli.main", "funcx"), ("endpoint.cli", "funcx-endpoint")):
        p = sub("--version", module=module)
        assert p.returncode == 0 and p.stdout.startswith(f"{program} {__version__} "), p.stdout


def test_not_found_is_3_and_usage_2_in_both_clis(tmp_path, service):
    env = {"FUNCX_HOME": str(tmp_path / "home")}
    for args in (("stop", "nope"), ("status", "nope"), ("logs", "nope"), ("delete", "nope", "-y"),
                 ("restart", "nope"), ("manager-command", "nope")):
        r = ep_cli(*args, env=env)
        assert r.exit_code == 3, (args, r.output)
        assert "nope" in r.stderr and "Traceback" not in r.stderr
    assert cli("function", "show", str(uuid.uuid4())).exit_code == 3
    assert ep_cli("list", "--format", "xml", env=env).exit_code == 2
    assert ep_cli("stop", "bad/name", env=env).exit_code == 2


def test_endpoint_stop_without_a_name(tmp_path):
    env = {"FUNCX_HOME": str(tmp_path / "home")}
    assert ep_cli("configure", "laptop", env=env).exit_code == 0
    r = ep_cli("stop", env=env)  # no "default" here: say which endpoints there are
    assert r.exit_code == 3
    assert "funcx-endpoint stop NAME" in r.stderr and "laptop (initialized)" in r.stderr
    assert "default" not in r.stderr
    assert ep_cli("configure", env=env).exit_code == 0  # now there is a "default"
    r = ep_cli("stop", env=env)
    assert r.exit_code == 0 and r.stdout.strip() == "Endpoint default was not running"


def test_one_set_of_state_words(endpoint):
    r = ep_cli("list", "--format", "json")
    states = {e["status"] for e in json.loads(r.stdout)}
    assert "online" in states and not states & {"Active", "Inactive", "Initialized"}
    r = ep_cli("status", "pytest-ep")
    assert r.exit_code == 0 and r.stdout.startswith("pytest-ep: online")
    assert "service says: online" in r.stdout
