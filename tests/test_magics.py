"""%funcx / %%funcx magics on a real IPython shell (and once in a real Jupyter
kernel), the task-monitor and endpoint-panel widgets after real tasks, and the
HTML reprs, all against the real local service and endpoint."""
from __future__ import annotations

import json
import time

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from funcx import FuncXExecutor, FuncXFuture
from funcx.errors import FuncxAPIError
from jupyter_ext.cellfuture import CellFuture
from jupyter_ext.magics import FuncXMagics, RemoteError
from jupyter_ext.widgets import EndpointPanel, TaskMonitor


@pytest.fixture(scope="module")
def shell(endpoint):
    """A real InteractiveShell with the extension loaded and pytest-ep as its endpoint."""
    sh = InteractiveShell.instance()
    assert sh.run_cell("%load_ext jupyter_ext").success
    assert "funcx" in sh.magics_manager.magics["line"]
    assert "funcx" in sh.magics_manager.magics["cell"]
    assert sh.run_cell("%funcx endpoint pytest-ep").success
    yield sh
    for ex in sh.magics_manager.registry["FuncXMagics"]._executors.values():
        ex.shutdown(wait=False)


@pytest.fixture(scope="module")
def magics(shell) -> FuncXMagics:
    return shell.magics_manager.registry["FuncXMagics"]


@pytest.fixture
def fresh(shell):
    """A new FuncXMagics (no default endpoint, nothing registered) for one test;
    the module's own is put back afterwards."""
    old = shell.magics_manager.registry["FuncXMagics"]
    new = FuncXMagics(shell)
    shell.register_magics(new)
    yield new
    shell.register_magics(old)


def run(shell, source: str):
    """Run a cell as a notebook would; return its ExecutionResult and what it showed."""
    with capture_output() as cap:
        res = shell.run_cell(source)
    return res, cap


# --------------------------------------------------------------- endpoint etc.
def test_endpoint_show_and_set(shell, fresh, endpoint):
    res, cap = run(shell, "%funcx endpoint")
    assert res.result is None and "no default endpoint" in cap.stdout
    res, _ = run(shell, "%funcx endpoints")  # no default needed
    assert res.success
    res, cap = run(shell, "%funcx run len('abc')")
    assert isinstance(res.error_in_exec, UsageError) and "no endpoint" in str(res.error_in_exec)

    res, _ = run(shell, "%funcx endpoint pytest-ep")  # by name
    assert fresh.endpoint_id == endpoint
    assert res.result["status"] == "online" and res.result.endpoint_id == endpoint
    shell.user_ns["EP_ID"] = endpoint
    res, _ = run(shell, "%funcx endpoint $EP_ID")  # by id, through $ expansion
    assert fresh.endpoint_id == endpoint and res.result["status"] == "online"
    res, _ = run(shell, "%funcx endpoint")  # show
    assert res.result.endpoint_id == endpoint

    res, _ = run(shell, "%funcx endpoint no-such-endpoint")
    assert isinstance(res.error_in_exec, FuncxAPIError) and res.error_in_exec.http_status == 404
    assert fresh.endpoint_id == endpoint  # unchanged


def test_whoami_and_login(shell, fresh, funcx_home, token, tmp_path, fxc):
    res, _ = run(shell, "%funcx whoami")
    me = fxc.whoami()
    assert res.result == f"{me['username']} ({me['user_id']}) at {fxc.funcx_service_address}"

    creds = funcx_home / "credentials" / "token.json"
    saved = creds.read_bytes()
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.write_text("not-a-token\n")
    good.write_text(token + "\n")
    try:
        res, _ = run(shell, f"%funcx login --token-file {bad}")
        assert isinstance(res.error_in_exec, FuncxAPIError) and res.error_in_exec.http_status == 401
        assert creds.read_bytes() == saved  # nothing written
        client_before = fresh.client
        res, _ = run(shell, f"%funcx login --token-file {good}")
        assert res.result == f"logged in as {me['username']}"
        assert fresh.client is not client_before  # a new client with the new credentials
        assert run(shell, "%funcx whoami")[0].result.startswith(me["username"])
        # the service's own credentials file is accepted as it is
        as_json = tmp_path / "token.json"
        as_json.write_text(json.dumps({"user": me["username"], "token": token}, indent=2))
        res, _ = run(shell, f"%funcx login --token-file {as_json}")
        assert res.result == f"logged in as {me['username']}"
    finally:
        creds.write_bytes(saved)


def usage_error(shell, source: str) -> str:
    """Run a misused magic: it must fail with IPython's one-line UsageError
    (no traceback of the extension); return that line."""
    res, cap = run(shell, source)
    assert type(res.error_in_exec) is UsageError, (source, res.error_in_exec)
    lines = cap.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UsageError: "), (source, cap.stderr)
    assert "Traceback" not in cap.stdout + cap.stderr and "magics.py" not in cap.stdout
    return lines[0]


def test_help_and_usage_errors_are_one_line(shell):
    res, cap = run(shell, "%funcx")
    assert res.success and "%%funcx [--endpoint EP]" in cap.stdout
    assert usage_error(shell, "%funcx rn f(1)") == \
        "UsageError: unknown %funcx command 'rn' (did you mean 'run'?); " \
        "`%funcx` alone lists the commands"
    assert "unknown %funcx command 'frobnicate';" in usage_error(shell, "%funcx frobnicate 1 2")
    assert "f(1, 2)" in usage_error(shell, "%funcx run 1 + 2")
    assert usage_error(shell, "%funcx run --in missing") == (
        "UsageError: unknown option --in for %funcx run "
        "(its options: --no-wait, --endpoint, --timeout)")
    assert "--timeout needs a value" in usage_error(shell, "%funcx run len('a') --timeout")
    assert "--timeout needs a number of seconds, not 'soon'" in \
        usage_error(shell, "%funcx run len('a') --timeout soon")
    assert "needs a task id" in usage_error(shell, "%funcx result")
    assert "unknown option --frobnicate for %%funcx" in usage_error(shell, "%%funcx --frobnicate\n1\n")
    assert "takes only options, not 'extra'" in usage_error(shell, "%%funcx extra\n1\n")
    assert "--in names not defined in the notebook: not_here" in \
        usage_error(shell, "%%funcx --in not_here\n1\n")
    # a string argument that looks like an option is the call's, not an option
    assert run(shell, "%funcx run len('--in') --timeout 60")[0].result == 4


# ------------------------------------------------------------------------ run
def test_run_registers_once_and_again_when_source_changes(shell, magics):
    calls = []
    real = magics.client.register_function

    def counting(fn, *a, **kw):  # a spy on the real registration
        calls.append(fn.__name__)
        return real(fn, *a, **kw)

    magics.client.register_function = counting
    try:
        assert run(shell, "def combine(a, b):\n    return a + b\n")[0].success
        first_id = magics.register(shell.user_ns["combine"])
        assert run(shell, "%funcx run combine(1, 2)")[0].result == 3
        shell.user_ns.update(p=10, q=20)
        assert run(shell, "%funcx run combine(p, b=q)")[0].result == 30  # notebook variables
        assert calls == ["combine"]  # registered once

        # the same source again (a re-run cell): the same function id, no registration
        assert run(shell, "def combine(a, b):\n    return a + b\n")[0].success
        assert magics.register(shell.user_ns["combine"]) == first_id
        assert run(shell, "%funcx run combine(2, 3)")[0].result == 5
        assert calls == ["combine"]

        # changed source: registered again, and the new code runs remotely
        assert run(shell, "def combine(a, b):\n    return a * b\n")[0].success
        assert run(shell, "%funcx run combine(2, 3)")[0].result == 6
        assert calls == ["combine", "combine"]
        assert magics.register(shell.user_ns["combine"]) != first_id
    finally:
        del magics.client.register_function


def test_run_no_wait_returns_future(shell, endpoint):
    assert run(shell, "def power(a, n=2):\n    return a ** n\n")[0].success
    res, _ = run(shell, "%funcx run power(3, n=3) --no-wait")
    fut = res.result
    assert isinstance(fut, FuncXFuture)
    assert fut.result(timeout=60) == 27
    assert fut.task_id
    # with an explicit endpoint
    res, _ = run(shell, "%funcx run --endpoint pytest-ep --no-wait power(5)")
    assert res.result.result(timeout=60) == 25


def test_run_string_arguments_keep_their_quotes(shell):
    assert run(shell, "def join(*parts, sep=''):\n    return sep.join(parts)\n")[0].success
    res, _ = run(shell, """%funcx run join('a  b', "c d", sep=' --no-wait ') --timeout 60""")
    assert res.result == "a  b --no-wait c d"
    res, _ = run(shell, "%funcx run --endpoint pytest-ep join('x y', 'z')")
    assert res.result == "x yz"


def test_run_remote_exception_shows_remote_traceback(shell):
    assert run(shell, "def ratio(a):\n    return 1 / a\n")[0].success
    res, cap = run(shell, "%funcx run ratio(0)")
    err = res.error_in_exec
    assert isinstance(err, RemoteError) and isinstance(err.original, ZeroDivisionError)
    lines = err._render_traceback_()
    assert f"Remote traceback (from the endpoint, task {err.original.task_id}):" in lines[0]
    assert "Traceback (most recent call last):" in lines
    assert any(ln.endswith(", line 2, in ratio") for ln in lines)  # the remote frame
    assert "    return 1 / a" in lines  # and the function's line
    assert lines[-1] == "ZeroDivisionError: division by zero"
    # what the notebook shows is that traceback, not a local one through the magics
    assert "Remote traceback (from the endpoint" in cap.stdout and "in ratio" in cap.stdout
    assert "magics.py" not in cap.stdout and "run_line_magic" not in cap.stdout


def test_run_timeout(shell):
    assert run(shell, "def nap(s):\n    import time\n    time.sleep(s)\n    return s\n")[0].success
    t0 = time.monotonic()
    res, _ = run(shell, "%funcx run nap(2) --timeout 0.3")
    assert isinstance(res.error_in_exec, TimeoutError) and "--no-wait" in str(res.error_in_exec)
    assert time.monotonic() - t0 < 0.9  # not held by the 1 s quiet wait before a progress bar
    res, _ = run(shell, "%%funcx --timeout 0.3\nimport time\ntime.sleep(2)\n")
    assert isinstance(res.error_in_exec, TimeoutError)


# ---------------------------------------------------------------------- cells
def test_cell_in_out_and_stdout(shell):
    shell.user_ns.update(width=6, height=7)
    shell.user_ns.pop("area", None)
    res, cap = run(shell, "%%funcx --in width,height --out area,note\n"
                          "import sys\n"
                          "print('computing remotely')\n"
                          "print('a warning', file=sys.stderr)\n"
                          "area = width * height\n"
                          "note = f'{width}x{height}'\n")
    assert res.success and res.result is None  # with --out: nothing displayed
    assert shell.user_ns["area"] == 42 and shell.user_ns["note"] == "6x7"
    assert cap.stdout.startswith("computing remotely\n")
    assert cap.stderr == "a warning\n"


def test_cell_last_expression(shell):
    shell.user_ns["base"] = 40
    res, cap = run(shell, "%%funcx --in base\nimport os\nextra = 2\nbase + extra\n")
    assert res.result == 42
    assert "extra" not in shell.user_ns or shell.user_ns["extra"] != 2  # not shipped back
    res, _ = run(shell, "%%funcx --endpoint pytest-ep\nimport os\nos.getpid() != 0\n")
    assert res.result is True
    # the cell ran elsewhere: the endpoint's worker, not this process
    res, _ = run(shell, "%%funcx\nimport os\nos.getpid()\n")
    import os

    assert isinstance(res.result, int) and res.result != os.getpid()


def test_cell_no_wait_future_shows_task_id_and_its_result_is_the_cells(shell):
    shell.user_ns["seed"] = 3
    res, _ = run(shell, "%%funcx --in seed --no-wait\nprint('doubling')\nseed * 2\n")
    fut = res.result
    assert isinstance(fut, CellFuture) and fut.task_id  # the id is known when it is shown
    data = formats(shell, fut)
    assert fut.task_id in data["text/plain"] and fut.task_id in data["text/html"]
    assert fut.result(timeout=60) == 6  # what the cell would have shown, not an internal dict
    assert fut.stdout == "doubling\n" and fut.stderr == ""
    data = formats(shell, fut)
    assert "success" in data["text/html"] and "doubling" in data["text/html"]
    assert data["text/plain"] == f"<CellFuture task_id={fut.task_id} state=success>"
    # with --out: the named variables, also put in the notebook once done
    shell.user_ns.pop("tripled", None)
    res, _ = run(shell, "%%funcx --in seed --out tripled --no-wait\ntripled = seed * 3\n")
    assert res.result.result(timeout=60) == {"tripled": 9}
    assert shell.user_ns["tripled"] == 9
    # a failing cell: its future raises the remote error, with what it printed
    res, _ = run(shell, "%%funcx --no-wait\nprint('about to fail')\n1 / 0\n")
    with pytest.raises(RemoteError) as info:
        res.result.result(timeout=60)
    assert isinstance(info.value.original, ZeroDivisionError)
    assert res.result.stdout == "about to fail\n"
    assert "about to fail" in formats(shell, res.result)["text/html"]


def test_cell_output_never_set(shell):
    res, _ = run(shell, "%%funcx --out never_set\nx = 1\n")
    assert isinstance(res.error_in_exec, RemoteError)
    assert "the cell did not define never_set" in str(res.error_in_exec)


def test_cell_remote_exception(shell):
    res, cap = run(shell, "%%funcx\nvalues = {'a': 1}\nprint('before the error')\nvalues['b']\n")
    err = res.error_in_exec
    assert isinstance(err, RemoteError) and isinstance(err.original, KeyError)
    lines = err._render_traceback_()
    assert '  File "<funcx cell>", line 3, in <module>' in lines
    assert "    values['b']" in lines  # the failing line of the cell
    assert lines[-1] == "KeyError: 'b'"
    # what the cell printed comes first, then only the cell's frames (not the runner's)
    assert lines.index("before the error") < lines.index("Traceback (most recent call last):")
    assert "--- the task's stdout ---" in lines
    assert not any("cellrun.py" in ln or "run_cell" in ln for ln in lines)
    assert "Remote traceback (from the endpoint" in cap.stdout and "magics.py" not in cap.stdout


def test_a_cell_that_prints_a_lot_then_fails_shows_its_own_error(shell):
    """What the cell printed rides with the worker's (bounded) capture, not
    on the exception: 12 MB printed before a ValueError is the ValueError,
    not a result-size failure that hides it."""
    res, _ = run(shell, "%%funcx\nprint('x' * (12 * 1024 * 1024))\n"
                        "raise ValueError('the real error')\n")
    err = res.error_in_exec
    assert isinstance(err, RemoteError) and isinstance(err.original, ValueError), err
    assert str(err.original) == "the real error"
    assert not hasattr(err.original, "cell_stdout") and not hasattr(err.original, "cell_stderr")
    printed = err.original.stdout  # the capture: its tail, cut with a marker
    assert 0 < len(printed) < 1024 * 1024 and printed.rstrip().endswith("x")


# --------------------------------------------------------- status/result/monitor
def test_status_result_monitor(shell, magics):
    assert run(shell, "def halve(x):\n    return x / 2\n")[0].success
    ok = run(shell, "%funcx run halve(9) --no-wait")[0].result
    bad = run(shell, "%funcx run halve('nine') --no-wait")[0].result
    assert ok.result(timeout=60) == 4.5
    with pytest.raises(TypeError):
        bad.result(timeout=60)

    st = run(shell, f"%funcx status {ok.task_id}")[0].result
    assert st["status"] == "success" and st["result"] == 4.5 and st["task_id"] == ok.task_id
    assert run(shell, f"%funcx result {ok.task_id}")[0].result == 4.5
    res, _ = run(shell, f"%funcx result {bad.task_id}")
    assert isinstance(res.error_in_exec, RemoteError) and "TypeError" in str(res.error_in_exec)

    # a task group: by id, and by default the group of the magics' executor
    group = magics.executor(magics.endpoint_id).task_group_id
    for line in (f"%funcx status {group}", "%funcx status"):
        st = run(shell, line)[0].result
        assert st["task_group_id"] == group
        assert st["total"] >= 2 and st["failed"] >= 1 and st["success"] >= 1

    # all the magics' tasks so far are done: the monitor finishes at once
    mon = run(shell, "%funcx monitor")[0].result
    assert isinstance(mon, TaskMonitor) and mon.task_group_id == group
    assert mon.finished.wait(30)
    mon2 = run(shell, f"%funcx monitor {group}")[0].result
    assert mon2.finished.wait(30) and mon2.counts == mon.counts


# -------------------------------------------------------------------- widgets
def square_or_fail(i):
    if i >= 5:
        raise ValueError(f"{i} fails on purpose")
    return i * i


def nap_then(i, s):
    import time

    time.sleep(s)
    return i


def test_endpoint_panel(fxc, endpoint):
    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:  # a manager is connected
        assert ex.submit(nap_then, 1, 0).result(timeout=60) == 1
    panel = EndpointPanel(fxc)
    # worker counts come with the endpoint's heartbeats: refresh (the button) until
    # a heartbeat since the manager connected has arrived
    deadline = time.monotonic() + 30
    while True:
        row = next(r for r in panel.rows if r["endpoint_id"] == endpoint)
        if row["workers"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
        panel.button.click()
    assert row["name"] == "pytest-ep" and row["status"] == "online" and row["workers"] == 2
    assert "pytest-ep" in panel.table.value and endpoint in panel.table.value
    assert ">online<" in panel.table.value and "2 (" in panel.table.value


# ---------------------------------------------------------------------- reprs
def formats(shell, obj) -> dict:
    """The MIME bundle a notebook stores for ``obj``."""
    data, _ = shell.display_formatter.format(obj)
    assert data["text/plain"].strip()  # the text/plain fallback is never empty
    return data


def test_html_reprs(shell, fxc, endpoint):
    data = formats(shell, fxc)
    assert fxc.funcx_service_address in data["text/html"]
    assert fxc.session_task_group_id in data["text/html"] and "FuncXClient" in data["text/html"]
    assert fxc.funcx_service_address in data["text/plain"]

    with FuncXExecutor(endpoint_id=endpoint, client=fxc) as ex:
        good = ex.submit(nap_then, "forty-two", 0)
        bad = ex.submit(square_or_fail, 9)
        slow = ex.submit(nap_then, 1, 1.5)
        assert good.submitted.wait(30) and slow.submitted.wait(30)
        data = formats(shell, slow)
        assert "pending" in data["text/html"] and slow.task_id in data["text/html"]
        assert good.result(timeout=60) == "forty-two"
        with pytest.raises(ValueError):
            bad.result(timeout=60)
        slow.result(timeout=60)
    data = formats(shell, good)
    assert good.task_id in data["text/html"] and "success" in data["text/html"]
    assert "forty-two" in data["text/html"] and good.task_id in data["text/plain"]
    data = formats(shell, bad)
    assert "failed" in data["text/html"] and "ValueError: 9 fails on purpose" in data["text/html"]
    assert "ValueError: ValueError" not in data["text/html"]  # the type once
    assert "raise ValueError(f&quot;{i} fails on purpose&quot;)" in data["text/html"]  # its line

    rec = fxc.get_task(good.task_id)
    data = formats(shell, rec)
    assert good.task_id in data["text/html"] and "success" in data["text/html"]
    assert "forty-two" in data["text/html"] and "forty-two" in data["text/plain"]
    data = formats(shell, fxc.get_task(bad.task_id))
    assert "failed" in data["text/html"] and "ValueError" in data["text/html"]

    st = fxc.get_endpoint_status(endpoint)
    data = formats(shell, st)
    assert endpoint in data["text/html"] and "online" in data["text/html"]
    assert "Workers" in data["text/html"] and "Outstanding tasks" in data["text/html"]
    assert "online" in data["text/plain"]


# ------------------------------------------------------------------ in a kernel
def test_magics_in_a_real_kernel(endpoint, tmp_path):
    import sys

    from notebook_kernel import cell_texts, execute

    nb = nbformat.v4.new_notebook()
    sources = ["import sys; print(sys.executable)",
               "%load_ext jupyter_ext",
               "%funcx endpoint pytest-ep",
               "def f(a, b):\n    return a + b",
               "%funcx run f(2, 3)",
               "def g(a):\n    print('dividing by', a)\n    return 1 / a",
               "%funcx run g(0)",
               "%funcx rn g(0)",
               "fut = %funcx run g(0) --no-wait\nfut.exception(timeout=60)\nfut",
               "fut.result()"]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    for i in (6, 7, 9):
        nb.cells[i].metadata["tags"] = ["raises-exception"]  # the expected errors
    execute(nb, tmp_path, tmp_path)
    texts = cell_texts(nb)
    assert texts[0].strip() == sys.executable  # the kernel runs this venv's python
    assert "online" in texts[2]
    assert [o.data["text/plain"] for o in nb.cells[4].outputs
            if o.output_type == "execute_result"] == ["5"]
    err = [o for o in nb.cells[6].outputs if o.output_type == "error"]
    assert len(err) == 1 and err[0].ename == "RemoteError"
    tb = "\n".join(err[0].traceback)
    assert "Remote traceback (from the endpoint, task " in tb
    assert ", in g" in tb and "return 1 / a" in tb and "ZeroDivisionError" in tb
    assert "magics.py" not in tb
    # a misspelt command: one line, no traceback
    assert [(o.output_type, o.get("name"), o.get("text", "").count("\n")) for o in
            nb.cells[7].outputs] == [("stream", "stderr", 1)]
    assert nb.cells[7].outputs[0].text.startswith("UsageError: unknown %funcx command 'rn' "
                                                  "(did you mean 'run'?)")
    # a failed future: its HTML names the error once; .result() shows the remote frames only
    html = "".join(o.data.get("text/html", "") for o in nb.cells[8].outputs
                   if o.output_type == "execute_result")
    assert "ZeroDivisionError: division by zero" in html and "ZeroDivisionError: Zero" not in html
    err = [o for o in nb.cells[9].outputs if o.output_type == "error"]
    assert len(err) == 1 and err[0].ename == "ZeroDivisionError"
    tb = "\n".join(err[0].traceback)
    assert "return 1 / a" in tb and tb.count("ZeroDivisionError: division by zero") == 1
    assert "concurrent" not in tb and "_base.py" not in tb and "executor.py" not in tb
