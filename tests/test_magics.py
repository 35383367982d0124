"""%funcx / %%funcx magics on a real IPython shell (and once in a real Jupyter
kernel), the task-monitor and endpoint-panel widgets after real tasks, and the
HTML reprs, all against the real local service and endpoint."""
from __future__ import annotations

import json
import time
import uuid

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from funcx import FuncXExecutor, FuncXFuture
from funcx.errors import FuncxAPIError
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
    assert isinstance(res.error_in_exec, ValueError) and "no endpoint" in str(res.error_in_exec)

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


def test_help_and_unknown_subcommand(shell):
    res, cap = run(shell, "%funcx")
    assert res.success and "%%funcx [--endpoint EP]" in cap.stdout
    res, _ = run(shell, "%funcx frobnicate 1 2")
    assert isinstance(res.error_in_exec, ValueError)
    assert "unknown %funcx command 'frobnicate'" in str(res.error_in_exec)
    res, _ = run(shell, "%funcx run 1 + 2")
    assert isinstance(res.error_in_exec, ValueError) and "f(1, 2)" in str(res.error_in_exec)
    res, _ = run(shell, "%funcx result")
    assert isinstance(res.error_in_exec, ValueError)


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
    assert "Remote traceback (from the endpoint)" in lines[0]
    assert "Traceback (most recent call last):" in lines
    assert any(ln.endswith(", line 2, in ratio") for ln in lines)  # the remote frame
    assert "    return 1 / a" in lines  # and the function's line
    assert lines[-1] == "ZeroDivisionError: division by zero"
    # what the notebook shows is that traceback, not a local one through the magics
    assert "Remote traceback (from the endpoint)" in cap.stdout and "in ratio" in cap.stdout
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


def test_cell_no_wait_and_bad_names(shell):
    shell.user_ns["seed"] = 3
    res, _ = run(shell, "%%funcx --in seed --no-wait\nseed * 2\n")
    fut = res.result
    assert isinstance(fut, FuncXFuture)
    assert fut.result(timeout=60)["value"] == 6
    res, _ = run(shell, "%%funcx --in not_defined_here\n1\n")
    assert isinstance(res.error_in_exec, NameError) and "not_defined_here" in str(res.error_in_exec)
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
    assert "Remote traceback (from the endpoint)" in cap.stdout and "magics.py" not in cap.stdout


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


def test_monitor_of_a_finished_batch(fxc, endpoint):
    fid = fxc.register_function(square_or_fail)
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    for i in range(7):
        batch.add(i, endpoint_id=endpoint, function_id=fid)
    ids = fxc.batch_run(batch)
    fxc.wait(ids, timeout=60)  # pushed completion: all 7 are done now

    mon = TaskMonitor(fxc, batch.task_group_id)
    assert mon.finished.wait(30)
    assert mon.progress.value == 7 == mon.progress.max
    assert mon.counts == {"success": 5, "failed": 2}
    assert mon.progress.bar_style == "warning"  # some failed, not all
    assert "<b>7</b> / 7 done" in mon.label.value
    assert repr(mon).startswith(f"TaskMonitor(task group {batch.task_group_id}: 7/7 done")
    assert "failed: 2" in mon.counts_html.value and "success: 5" in mon.counts_html.value
    assert mon.table.value.count("<tr") == 1 + 7  # header + the latest 7
    # nothing left to watch: no watcher thread is running
    assert mon._thread is None or (mon._thread.join(10) is None and not mon._thread.is_alive())


def test_monitor_updates_live(fxc, endpoint):
    fid = fxc.register_function(nap_then)
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    for i in range(6):  # 2 workers: at least three rounds of 0.6 s
        batch.add(i, 0.6, endpoint_id=endpoint, function_id=fid)
    ids = fxc.batch_run(batch)

    mon = TaskMonitor(fxc, batch.task_group_id)  # attached before they finish
    seen: list[int] = []
    mon.progress.observe(lambda ch: seen.append(ch["new"]), names="value")
    assert mon.progress.max == 6 and mon.progress.value < 6 and not mon.finished.is_set()
    assert mon._thread is not None and mon._thread.is_alive()  # watching the push channel

    assert mon.finished.wait(60)
    assert seen and seen[-1] == 6 == mon.progress.value
    assert seen == sorted(seen) and len(set(seen)) >= 2  # it moved as results arrived
    assert mon.counts == {"success": 6} and mon.progress.bar_style == "success"
    mon._thread.join(10)
    assert not mon._thread.is_alive()  # stopped once the group finished
    assert all(fxc.get_task(t)["status"] == "success" for t in ids)


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
    assert "failed" in data["text/html"] and "ValueError" in data["text/html"]
    assert "9 fails on purpose" in data["text/html"]

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
               "def g(a):\n    return 1 / a",
               "%funcx run g(0)"]
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[-1].metadata["tags"] = ["raises-exception"]  # the one expected error
    execute(nb, tmp_path, tmp_path)
    texts = cell_texts(nb)
    assert texts[0].strip() == sys.executable  # the kernel runs this venv's python
    assert "online" in texts[2]
    assert [o.data["text/plain"] for o in nb.cells[4].outputs
            if o.output_type == "execute_result"] == ["5"]
    err = [o for o in nb.cells[6].outputs if o.output_type == "error"]
    assert len(err) == 1 and err[0].ename == "RemoteError"
    tb = "\n".join(err[0].traceback)
    assert "Remote traceback (from the endpoint)" in tb
    assert ", in g" in tb and "return 1 / a" in tb and "ZeroDivisionError" in tb
    assert "magics.py" not in tb
