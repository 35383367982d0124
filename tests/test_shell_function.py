"""ShellFunction (issue 18 item 1): a command template formatted with the
call's keyword arguments and run with a real ``/bin/bash``, locally and on a
real endpoint, from the SDK and the executor (the CLI's ``funcx run --shell``
and ``%funcx shell`` are tested with the CLI and the magics)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from faults.faultlib import wait_until

from funcx import FuncXExecutor, MPIFunction, ShellFunction, ShellResult
from funcx.sdk.shell_function import (
    WALLTIME_RETURNCODE,
    ShellCommandError,
    format_command,
    last_lines,
    template_fields,
)

RESULT_S = 60


# ------------------------------------------------------------ pure, local calls
def test_template_fields_and_formatting():
    assert template_fields("echo {message} {n} {{literal}} {message}") == ["message", "n"]
    assert format_command("echo {a} {{b}}", {"a": "x y"}) == "echo x y {b}"


def test_a_missing_argument_is_named():
    with pytest.raises(ShellCommandError, match=r"names n, m but the call did not give n=, m="):
        format_command("echo {n} {m}", {})
    with pytest.raises(ShellCommandError, match="positional field"):
        format_command("echo {}", {})


def test_local_call_runs_bash_and_answers_a_shell_result(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUNCX_TASK_SANDBOX_DIR", raising=False)
    sf = ShellFunction("echo {message} > out.txt; cat out.txt; echo oops >&2")
    r = sf(message="hello world")
    assert isinstance(r, ShellResult)
    assert (r.cmd, r.stdout, r.stderr, r.returncode, r.exception_name) == (
        "echo hello world > out.txt; cat out.txt; echo oops >&2", "hello world\n", "oops\n",
        0, None)
    assert (tmp_path / "out.txt").read_text() == "hello world\n"  # not on an endpoint: cwd
    assert str(r) == "hello world\n"


def test_a_non_zero_exit_is_a_result_not_an_exception():
    r = ShellFunction("echo before; exit {code}")(code=3)
    assert r.returncode == 3 and r.stdout == "before\n" and r.exception_name is None


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_walltime_kills_the_command_and_its_children_with_124(tmp_path):
    pidfile = tmp_path / "child.pid"
    sf = ShellFunction(f"sleep 60 & echo $! > {pidfile}; echo started; sleep 30", walltime=0.5)
    t0 = time.monotonic()
    r = sf()
    assert time.monotonic() - t0 < 5
    assert r.returncode == WALLTIME_RETURNCODE == 124
    assert r.exception_name == "subprocess.TimeoutExpired"
    assert r.stdout == "started\n"
    child = int(pidfile.read_text())
    assert wait_until(lambda: _gone(child), 5), "the command's background child survived"


def test_snippet_lines_keeps_the_last_lines_and_the_files_keep_all(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUNCX_TASK_SANDBOX_DIR", raising=False)
    r = ShellFunction("seq 1 {n}", snippet_lines=3)(n=10)
    assert r.stdout == "8\n9\n10\n"
    kept = ShellFunction("seq 1 5; seq 6 7 >&2", stdout="all.out", stderr="all.err",
                         snippet_lines=1)()
    assert (kept.stdout, kept.stderr) == ("5\n", "7\n")
    assert (tmp_path / "all.out").read_text() == "1\n2\n3\n4\n5\n"
    assert (tmp_path / "all.err").read_text() == "6\n7\n"
    assert ShellFunction("seq 1 3", snippet_lines=0)().stdout == ""
    assert ShellFunction("seq 1 3", snippet_lines=-1)().stdout == "1\n2\n3\n"


def test_last_lines_replaces_bytes_that_are_not_utf8(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"ok\n\xff\xfe\n")
    assert last_lines(str(p), 1) == "\ufffd\ufffd\n"


def test_return_dict_answers_plain_data():
    d = ShellFunction("printf {x}", return_dict=True)(x="abc")
    assert d == {"cmd": "printf abc", "stdout": "abc", "stderr": "", "returncode": 0,
                 "exception_name": None}


def test_bad_construction_is_refused_at_once():
    for kwargs in ({"cmd": ""}, {"cmd": "ls", "walltime": 0}, {"cmd": "ls", "walltime": "5"},
                   {"cmd": "ls", "snippet_lines": 1.5}):
        with pytest.raises(ShellCommandError):
            ShellFunction(**kwargs)


def test_names_for_registration():
    assert ShellFunction("/usr/bin/env python3 x.py").__name__ == "shell_env"
    assert ShellFunction("ls", name="listing").__name__ == "listing"
    assert MPIFunction("hostname").__name__ == "mpi_hostname"
    assert ShellFunction("ls -l").__doc__ == "ShellFunction: ls -l"


def test_mpi_function_without_an_mpi_endpoint_says_what_it_needs(monkeypatch):
    monkeypatch.delenv("PARSL_MPI_PREFIX", raising=False)
    with pytest.raises(ShellCommandError, match=r"mpi_launcher=.*num_nodes"):
        MPIFunction("hostname")()
    monkeypatch.setenv("PARSL_MPI_PREFIX", "env FROM_PREFIX=1")
    r = MPIFunction("printenv {name}")(name="FROM_PREFIX")
    assert (r.cmd, r.stdout) == ("env FROM_PREFIX=1 printenv FROM_PREFIX", "1\n")


# ------------------------------------------------------------ on a real endpoint
def test_sdk_register_and_run_in_a_per_task_directory(fxc, endpoint):
    sf = ShellFunction("echo {message} > out.txt; cat out.txt; pwd; echo $FUNCX_TASK_ID; "
                       "echo $FUNCX_TASK_SANDBOX_DIR")
    fid = fxc.register_function(sf)
    assert fxc.register_function(ShellFunction(sf.cmd)) == fid  # same content, same id
    assert fxc.get_function(fid)["function_name"] == "shell_echo"
    tid = fxc.run(endpoint_id=endpoint, function_id=fid, message="hi there")
    done = fxc.wait([tid], timeout=RESULT_S)[tid]
    assert "result" in done, done
    r = done["result"]
    assert isinstance(r, ShellResult) and r.returncode == 0
    said, cwd, task_id, sandbox = r.stdout.splitlines()
    assert said == "hi there" and task_id == tid and sandbox == cwd
    assert Path(cwd).name == tid  # the task's own directory, kept with its files
    assert (Path(cwd) / "out.txt").read_text() == "hi there\n"


def test_executor_submit_results_exit_codes_walltime_and_dicts(fxc, endpoint):
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as fxe:
        ok = fxe.submit(ShellFunction("echo {message}"), message="hi")
        bad = fxe.submit(ShellFunction("echo to-stderr >&2; exit 7"))
        slow = fxe.submit(ShellFunction("echo begun; sleep 30", walltime=1))
        plain = fxe.submit(ShellFunction("seq 1 {n}", snippet_lines=2, return_dict=True), n=5)
        missing = fxe.submit(ShellFunction("echo {message}"))
        r = ok.result(RESULT_S)
        assert (r.stdout, r.returncode) == ("hi\n", 0)
        r = bad.result(RESULT_S)  # the task succeeded: the exit status is the result
        assert (r.returncode, r.stderr, r.exception_name) == (7, "to-stderr\n", None)
        r = slow.result(RESULT_S)
        assert (r.returncode, r.stdout, r.exception_name) == (
            124, "begun\n", "subprocess.TimeoutExpired")
        assert plain.result(RESULT_S) == {"cmd": "seq 1 5", "stdout": "4\n5\n", "stderr": "",
                                          "returncode": 0, "exception_name": None}
        exc = missing.exception(RESULT_S)
        assert isinstance(exc, ShellCommandError)
        assert "the call did not give message=" in str(exc)


def test_mpi_function_on_an_endpoint_not_in_mpi_mode_fails_clearly(fxc, endpoint):
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as fxe:
        exc = fxe.submit(MPIFunction("hostname")).exception(RESULT_S)
    assert isinstance(exc, ShellCommandError) and "PARSL_MPI_PREFIX is not set" in str(exc)


def test_the_task_id_variable_is_the_tasks_own_and_put_back_after(fxc, endpoint):
    def task_id_seen():
        import os

        return os.environ.get("FUNCX_TASK_ID")

    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as fxe:
        futures = [fxe.submit(task_id_seen) for _ in range(4)]
        seen = [f.result(RESULT_S) for f in futures]
    assert seen == [f.task_id for f in futures]  # each its own, never a previous task's
    from endpoint.task_env import applied
    from funcx.protocol.messages import Task

    env: dict[str, str] = {"KEEP": "1"}
    with applied(Task("t1", "f", "", env={"PARSL_MPI_PREFIX": "mpiexec -n 2"}), env,
                 base="/w"):
        assert env == {"KEEP": "1", "FUNCX_TASK_ID": "t1", "PARSL_MPI_PREFIX": "mpiexec -n 2",
                       "FUNCX_TASK_SANDBOX_DIR": "/w/t1"}
    assert env == {"KEEP": "1"}
    with applied(Task("../x", "f", ""), env, base="/w"):  # never a directory outside base
        assert "FUNCX_TASK_SANDBOX_DIR" not in env


# ------------------------------------------------------------------ funcx run
def funcx_cli(*args: str) -> subprocess.CompletedProcess:
    """The real ``funcx`` command, as a subprocess (its streams kept apart)."""
    return subprocess.run([sys.executable, "-m", "funcx_cli.main", *args], capture_output=True,
                          text=True, timeout=120)


def test_funcx_run_shell_prints_the_streams_and_exits_with_the_status(endpoint):
    p = funcx_cli("run", "--shell", "echo {x} > f.txt; cat f.txt; echo warn >&2; exit 3",
                  "-e", endpoint, "--kwargs", '{"x": "from the CLI"}')
    assert p.returncode == 3
    assert p.stdout == "from the CLI\n"
    assert p.stderr.endswith("warn\n") and "submitted to" in p.stderr
    p = funcx_cli("run", "--shell", "echo {x}", "-e", endpoint, "--kwargs", '{"x": 1}',
                  "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["status"] == "success" and doc["result"] == {
        "cmd": "echo 1", "stdout": "1\n", "stderr": "", "returncode": 0, "exception_name": None}
    p = funcx_cli("run", "--shell", "sleep 30", "--walltime", "1", "-e", endpoint)
    assert p.returncode == 124 and "ran past its walltime" in p.stderr


def test_funcx_run_a_registered_shell_function_by_name(fxc, endpoint):
    name = f"greet_{uuid.uuid4().hex[:6]}"
    fxc.register_function(ShellFunction("echo hello {who}", name=name))
    p = funcx_cli("run", name, "-e", endpoint, "--kwargs", '{"who": "world"}')
    assert (p.returncode, p.stdout) == (0, "hello world\n"), p.stderr


def test_funcx_run_shell_usage_errors(endpoint):
    for args, said in ((["--shell", "echo {x}", "-e", endpoint, "x=1"], "with --shell"),
                       (["-e", endpoint], "give a function id or name, or --shell CMD"),
                       (["--shell", "echo", "--walltime", "0", "-e", endpoint], "walltime"),
                       (["--shell", "", "-e", endpoint], "needs a command")):
        p = funcx_cli("run", *args)
        assert p.returncode == 2 and said in p.stderr, (args, p.stderr)


# ------------------------------------------------------------------- %funcx shell
@pytest.fixture(scope="module")
def ipython(endpoint):
    """A real InteractiveShell with the extension loaded and pytest-ep as its endpoint."""
    from IPython.core.interactiveshell import InteractiveShell

    sh = InteractiveShell.instance()
    assert sh.run_cell("%load_ext jupyter_ext").success
    assert sh.run_cell("%funcx endpoint pytest-ep").success
    yield sh
    for ex in sh.magics_manager.registry["FuncXMagics"]._executors.values():
        ex.shutdown(wait=False)


def cell(sh, source: str):
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        res = sh.run_cell(source)
    return res, cap


def test_magic_shell_runs_a_command_with_the_notebooks_variables(ipython):
    ipython.user_ns["who"] = "notebook"
    # as with IPython's !cmd: {who} is the notebook's, {{ }} a literal brace
    res, cap = cell(ipython, "%funcx shell echo hi {who} | tr a-z A-Z; "
                             "awk 'BEGIN {{print \"braces\"}}'; echo err >&2")
    assert res.success, res.error_in_exec
    r = res.result
    assert isinstance(r, ShellResult) and r.returncode == 0
    assert r.cmd == "echo hi notebook | tr a-z A-Z; awk 'BEGIN {print \"braces\"}'; echo err >&2"
    assert cap.stdout.startswith("HI NOTEBOOK\nbraces\n") and "err\n" in cap.stderr
    res, cap = cell(ipython, "%funcx shell echo '{not_a_variable}' ${HOME:+set}")
    assert res.result.cmd == "echo '{not_a_variable}' ${HOME:+set}"  # runs as written
    assert res.result.stdout == "{not_a_variable} set\n"


def test_magic_shell_exit_status_walltime_and_no_wait(ipython):
    res, cap = cell(ipython, "%funcx shell --walltime 1 echo started; sleep 30")
    assert res.success and res.result.returncode == 124
    assert "[exit status 124 (subprocess.TimeoutExpired: past its walltime)]" in cap.stderr
    res, cap = cell(ipython, "%funcx shell exit 5")
    assert res.result.returncode == 5 and "[exit status 5]" in cap.stderr
    res, _ = cell(ipython, "%funcx shell --no-wait -e pytest-ep echo later")
    assert res.result.result(RESULT_S).stdout == "later\n"


def test_magic_shell_usage_errors(ipython):
    from IPython.core.error import UsageError

    for line, said in (("%funcx shell", "needs a command"),
                       ("%funcx shell --wall 3 ls", "unknown option --wall"),
                       ("%funcx shell --walltime x ls", "--walltime needs a number")):
        res, _ = cell(ipython, line)
        assert isinstance(res.error_in_exec, UsageError) and said in str(res.error_in_exec)


def test_return_dict_results_travel_as_json(fxc, endpoint):
    """return_dict=True with the JSON result serializer: a result any language reads."""
    from funcx.serialize import JSONData

    sf = ShellFunction("echo {x}", return_dict=True)
    tid = fxc.run(endpoint_id=endpoint, function_id=fxc.register_function(sf), x="json",
                  result_serializers=[JSONData()])
    done = fxc.wait([tid], timeout=RESULT_S)[tid]
    assert done["result"] == {"cmd": "echo json", "stdout": "json\n", "stderr": "",
                              "returncode": 0, "exception_name": None}
    stored = fxc.web_client.get(f"/v2/tasks/{tid}")["result"]  # as stored: JSON text
    assert stored.startswith("11\n") and json.loads(stored[3:])["stdout"] == "json\n"
