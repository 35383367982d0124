"""The task monitor: its pure progress logic (funcx.sdk.progress) on plain
rows, its HTML, and the ipywidgets monitor against the real local service
and endpoint — a bar per function by name, failures grouped by error with a
sample task id, elapsed time and ETA, and the final state that replaces the
live widget in the cell's output (what a notebook saved without its kernel
shows), checked in a real Jupyter kernel."""
from __future__ import annotations

import threading
import uuid

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display
from IPython.utils.capture import capture_output

from funcx.sdk.progress import GroupProgress, error_line, format_seconds
from funcx.sdk.progress_html import progress_html
from jupyter_ext.widgets import WIDGET_MIME, TaskMonitor

TB = ('Traceback (most recent call last):\n  File "x.py", line 2, in f\n'
      '    raise ValueError("{}")\nValueError: {}\n')


def rows(n_ok: int, n_bad: int, fid: str = "f" * 32, t0: float = 1000.0) -> list[dict]:
    out = []
    for i in range(n_ok + n_bad):
        out.append({"task_id": f"{fid[:4]}-{i:04d}", "function_id": fid, "created_at": str(t0),
                    "status": "success" if i < n_ok else "failed",
                    "completion_t": str(t0 + 1 + i)})
    return out


# ------------------------------------------------------------------ pure logic
def test_error_line_and_seconds():
    assert error_line(TB.format("too noisy", "too noisy")) == "ValueError: too noisy"
    assert error_line("") == "unknown error"
    assert error_line("E: " + "x" * 1000).endswith("…") and len(error_line("x" * 1000)) == 300
    assert [format_seconds(s) for s in (None, 0.4, 42, 187, 3725)] == \
        ["—", "0 s", "42 s", "3:07", "1:02:05"]


def test_progress_per_function_failures_and_times():
    p = GroupProgress()
    p.load(rows(3, 0, "a" * 32) + [
        {"task_id": "b-1", "function_id": "b" * 32, "created_at": "1000", "status": "running"},
        {"task_id": "b-2", "function_id": "b" * 32, "created_at": "1000", "status": "failed"},
        {"task_id": "b-3", "function_id": "b" * 32, "created_at": "1000", "status": "failed"},
        {"task_id": "b-4", "function_id": "b" * 32, "created_at": "1000", "status": "failed"}])
    p.names["a" * 32] = "square"  # "b…" has no known name: its short id
    assert not p.errors_known  # a listing does not carry errors
    new = p.apply([
        {"task_id": "b-2", "status": "failed", "completion_t": "1010",
         "exception": TB.format("bad input 7", "bad input 7")},
        {"task_id": "b-3", "status": "failed", "completion_t": "1011",
         "exception": TB.format("bad input 7", "bad input 7")},
        {"task_id": "b-4", "status": "failed", "completion_t": "1012", "exception": "WorkerLost: died"},
        {"task_id": "new-1", "status": "success", "completion_t": "1013"}])
    assert new == ["new-1"] and p.errors_known
    fs = {f.name: f for f in p.by_function()}
    assert set(fs) == {"square", "bbbbbbbb", "?"}
    assert (fs["square"].done, fs["square"].total, fs["square"].failed) == (3, 3, 0)
    assert (fs["bbbbbbbb"].done, fs["bbbbbbbb"].total, fs["bbbbbbbb"].failed) == (3, 4, 3)
    groups = p.failures()
    assert [(g.error, g.count, g.sample_task_id) for g in groups] == [
        ("ValueError: bad input 7", 2, "b-2"), ("WorkerLost: died", 1, "b-4")]
    assert groups[0].function == "bbbbbbbb"
    # 7 of 8 done in 13 s (first submit 1000 → now 1013): ETA for 1 more ≈ 13/7 s
    assert p.elapsed(now=1013) == 13 and p.eta(now=1013) == pytest.approx(13 / 7)
    assert not p.finished and p.ended() is None
    text = p.describe(now=1013)
    assert text.splitlines()[0] == "7/8 done, elapsed 13 s, ETA 2 s"
    assert "  square: 3/3 (3 success)" in text and "2 × ValueError: bad input 7  (e.g. task b-2)" in text


def test_progress_finished_keeps_pushed_state_over_a_stale_listing():
    p = GroupProgress()
    p.load(rows(2, 1))
    p.apply([{"task_id": "ffff-0002", "status": "failed", "exception": TB.format("x", "x")}])
    p.load([{"task_id": "ffff-0002", "status": "running", "function_id": "f" * 32}])  # stale
    assert p.rows["ffff-0002"]["status"] == "failed" and p.rows["ffff-0002"]["error"] == "ValueError: x"
    assert p.finished and p.eta() == 0.0 and p.elapsed() == 3.0  # last completion - first submit
    assert p.describe().splitlines()[0] == "3/3 done in 3 s"
    html = progress_html(p, "1234abcd-0000", rows=5)
    assert "<b>3</b> / 3 done" in html and "in 3 s" in html and "ETA" not in html
    assert "ValueError: x" in html and "ffff-0002" in html and "latest tasks" in html


def test_progress_html_escapes_user_text():
    p = GroupProgress()
    p.load(rows(0, 1))
    p.names["f" * 32] = "<script>f</script>"
    p.apply([{"task_id": "ffff-0000", "status": "failed", "exception": "E: <b>[x]</b>"}])
    html = progress_html(p, "g")
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;[x]" in html


# ------------------------------------------------------------ live, real service
def square_or_fail(i):
    if i >= 5:
        raise ValueError(f"{i % 2} fails on purpose")
    return i * i


def nap_then(i, s):
    import time

    time.sleep(s)
    return i


@pytest.fixture
def shell():
    """A real IPython shell, so that ``display`` publishes MIME bundles."""
    return InteractiveShell.instance()


def test_monitor_of_a_finished_batch(fxc, endpoint, shell):
    fid = fxc.register_function(square_or_fail)
    nap = fxc.register_function(nap_then)
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    for i in range(8):
        batch.add(i, endpoint_id=endpoint, function_id=fid)
    batch.add(1, 0, endpoint_id=endpoint, function_id=nap)
    ids = fxc.batch_run(batch)
    fxc.wait(ids, timeout=60)  # pushed completion: all 9 are done now

    # the listing names each failure's error
    listed = GroupProgress.of(fxc, batch.task_group_id)
    assert listed.finished and listed.errors_known
    assert sorted(g.count for g in listed.failures()) == [1, 2]
    # a listing without them (an older service): fetched, as many as asked
    for r in listed.rows.values():
        r.pop("error", None)
        r.pop("error_type", None)
    assert not listed.errors_known
    listed.load_errors(fxc, most=1)  # one fetched, the others say they were not
    assert listed.errors_known and sorted(g.count for g in listed.failures()) == [1, 2]
    assert "(error not loaded: see funcx task result)" in [g.error for g in listed.failures()]

    mon = TaskMonitor(fxc, batch.task_group_id)
    assert mon.finished.is_set() and mon._thread is None  # nothing left to watch
    assert mon.wait(30)
    assert mon.progress.value == 9 == mon.progress.max
    assert mon.counts == {"success": 6, "failed": 3}
    assert mon.progress.bar_style == "warning"  # some failed, not all
    # a bar per function, by name
    bars = {b.name.value: b for b in mon._bars.values()}
    assert set(bars) == {"<b>square_or_fail</b>", "<b>nap_then</b>"}
    sq = bars["<b>square_or_fail</b>"]
    assert (sq.bar.value, sq.bar.max, sq.bar.bar_style) == (8, 8, "warning")
    assert "8 / 8" in sq.text.value and "3 failed" in sq.text.value
    assert bars["<b>nap_then</b>"].bar.bar_style == "success"
    # failures grouped by error, with counts and a sample task id
    groups = mon.state.failures()
    assert [(g.error, g.count) for g in groups] == [
        ("ValueError: 1 fails on purpose", 2), ("ValueError: 0 fails on purpose", 1)]
    assert all(g.sample_task_id in ids for g in groups)
    assert "2 ×" in mon.failures_html.value and groups[0].sample_task_id in mon.failures_html.value
    assert "<b>9</b> / 9 done" in mon.label.value and " in " in mon.label.value
    assert "square_or_fail" in mon.table.value and "nap_then" in mon.table.value
    assert mon.table.value.count("<tr") == 1 + 9  # header + the latest 9
    # its text says it all
    text = repr(mon)
    assert text.startswith(f"TaskMonitor(task group {batch.task_group_id}: 9/9 done in ")
    assert "square_or_fail: 8/8 (3 failed, 5 success)" in text
    # a finished group shows its static final state at once (no widget to load)
    bundle = mon.final_bundle()
    assert "ValueError: 1 fails on purpose" in bundle["text/html"]
    assert "square_or_fail" in bundle["text/html"] and "9/9 done" in bundle["text/plain"]
    with capture_output() as cap:
        display(mon)
    assert [sorted(o.data) for o in cap.outputs] == [["text/html", "text/plain"]]


def test_monitor_updates_live(fxc, endpoint, shell):
    fid = fxc.register_function(nap_then)
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    for i in range(6):  # 2 workers: at least three rounds of 0.6 s
        batch.add(i, 0.6, endpoint_id=endpoint, function_id=fid)
    ids = fxc.batch_run(batch)

    mon = TaskMonitor(fxc, batch.task_group_id)  # attached before they finish
    with capture_output() as cap:
        display(mon)  # the live widget (under a display id its final state will replace)
    assert len(cap.outputs) == 1 and WIDGET_MIME in cap.outputs[0].data
    assert cap.outputs[0].data[WIDGET_MIME]["model_id"] == mon.model_id
    seen: list[int] = []
    mon.progress.observe(lambda ch: seen.append(ch["new"]), names="value")
    assert mon.progress.max == 6 and mon.progress.value < 6 and not mon.finished.is_set()
    assert mon._thread is not None and mon._thread.is_alive()  # watching the push channel
    assert "ETA" in mon.label.value and "elapsed" in mon.label.value

    assert mon.wait(60)
    assert seen and seen[-1] == 6 == mon.progress.value
    assert seen == sorted(seen) and len(set(seen)) >= 2  # it moved as results arrived
    assert mon.counts == {"success": 6} and mon.progress.bar_style == "success"
    assert "ETA" not in mon.label.value
    mon._thread.join(10)
    assert not mon._thread.is_alive()  # stopped once the group finished
    assert all(fxc.get_task(t)["status"] == "success" for t in ids)


def test_saved_notebook_keeps_the_final_state(endpoint, tmp_path):
    """In a real kernel: the monitor cell shows the live widget, and once the
    group is done its output is the final state as HTML and text — what the
    saved .ipynb holds for a reader without a kernel."""
    from notebook_kernel import execute

    sources = [
        "from funcx import FuncXClient\nfrom jupyter_ext import TaskMonitor\n"
        "import uuid\nfxc = FuncXClient()\nep = fxc.resolve_endpoint('pytest-ep')",
        "def slow_square(i):\n    import time\n    time.sleep(0.3)\n"
        "    if i == 3:\n        raise ArithmeticError('three is unlucky')\n    return i * i\n"
        "batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))\n"
        "fid = fxc.register_function(slow_square)\n"
        "for i in range(8):\n    batch.add(i, endpoint_id=ep, function_id=fid)\n"
        "ids = fxc.batch_run(batch)",
        "monitor = TaskMonitor(fxc, batch.task_group_id)\nmonitor",
        "assert monitor.wait(60)\nprint(monitor.counts)",
    ]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    execute(nb, tmp_path, tmp_path)
    outputs = nb.cells[2].outputs
    assert len(outputs) == 1 and outputs[0].output_type in ("display_data", "execute_result")
    data = outputs[0].data
    assert WIDGET_MIME not in data  # replaced: nothing that needs the kernel
    assert "<b>8</b> / 8 done" in data["text/html"] and "slow_square" in data["text/html"]
    assert "ArithmeticError: three is unlucky" in data["text/html"]
    assert "8/8 done in " in data["text/plain"] and "1 × ArithmeticError: three is unlucky" \
        in data["text/plain"]
    assert "'success': 7" in nb.cells[3].outputs[0].text


# ------------------------------------------------- watcher failures, locking, new tasks
class Faulty:
    """The real client, with one call made to fail or to wait on a gate."""

    def __init__(self, client, fail_watch: bool = False):
        self.client, self.fail_watch = client, fail_watch
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.list_limits: list[int] = []

    def __getattr__(self, name):
        return getattr(self.client, name)

    def watch_task_group(self, task_group_id, **kw):
        if self.fail_watch:
            raise RuntimeError("the service went away")
        yield from self.client.watch_task_group(task_group_id, **kw)

    def get_function(self, fid):
        if self.gate is not None:
            self.entered.set()
            assert self.gate.wait(60)
        return self.client.get_function(fid)

    def list_tasks(self, task_group_id=None, status=None, limit=50):
        self.list_limits.append(limit)
        return self.client.list_tasks(task_group_id=task_group_id, status=status, limit=limit)


@pytest.fixture(scope="module")
def offline_group(fxc):
    """A task group whose one task never finishes (its endpoint never runs)."""
    eid = fxc.register_endpoint(f"monitor-offline-{uuid.uuid4().hex[:8]}")["endpoint_id"]
    batch = fxc.create_batch(task_group_id=str(uuid.uuid4()))
    batch.add(2, endpoint_id=eid, function_id=fxc.register_function(square_or_fail))
    fxc.batch_run(batch)
    return batch.task_group_id


def test_a_watcher_failure_stays_shown_and_the_clock_stops(fxc, offline_group):
    mon = TaskMonitor(Faulty(fxc, fail_watch=True), offline_group)
    assert mon._thread is not None and mon._ticker is not None
    mon._thread.join(30)
    mon._ticker.join(30)  # the ticker ends with the watcher: it cannot redraw the header
    assert not mon._thread.is_alive() and not mon._ticker.is_alive()
    assert "stopped watching: the service went away" in mon.error_html.value
    assert not mon.finished.is_set()


def test_monitor_requests_are_made_without_holding_its_lock(fxc, offline_group):
    slow = Faulty(fxc)
    mon = TaskMonitor(slow, offline_group, start=False)
    mon.state.names.clear()  # the next refresh looks the function's name up again
    slow.gate = threading.Event()
    refresher = threading.Thread(target=mon.refresh, daemon=True)
    refresher.start()
    try:
        assert slow.entered.wait(30)  # the name lookup is in flight...
        assert mon._lock.acquire(timeout=5), "a request was made holding the monitor's lock"
        try:  # ...and the display can still be read
            assert "0/1 done" in mon.final_bundle()["text/plain"]
        finally:
            mon._lock.release()
    finally:
        slow.gate.set()
    refresher.join(30)
    assert mon.state.names  # the name arrived afterwards


def test_tasks_added_after_the_listing_are_fetched_alone(fxc, endpoint):
    """A pushed completion of a task the progress has not listed yet fetches
    the group's newest rows, not the whole group (up to 10,000 rows) again."""
    from funcx.sdk.progress import GROUP_TASKS_LIMIT

    fid = fxc.register_function(square_or_fail)
    tg = str(uuid.uuid4())
    first = fxc.create_batch(task_group_id=tg)
    first.add(0, endpoint_id=endpoint, function_id=fid)
    ids = fxc.batch_run(first)
    spy = Faulty(fxc)
    p = GroupProgress.of(spy, tg)
    assert p.total == 1 and spy.list_limits == [GROUP_TASKS_LIMIT]
    later = fxc.create_batch(task_group_id=tg)
    for i in range(1, 4):
        later.add(i, endpoint_id=endpoint, function_id=fid)
    ids += fxc.batch_run(later)
    for state in p.follow(spy, tg):
        if state.total == 4 and state.all_done:
            break
    assert set(p.rows) == set(ids)
    assert all(r.get("function_id") == fid for r in p.rows.values())  # learnt from the rows
    assert spy.list_limits[0] == GROUP_TASKS_LIMIT and spy.list_limits[1:]
    assert max(spy.list_limits[1:]) < GROUP_TASKS_LIMIT


def test_the_failure_line_is_defined_once():
    """The listing's error column, the progress's failure groups and the
    exception summary read the same line (funcx.protocol.failure_text)."""
    from backend.routes.tasks import listing_row
    from funcx.errors import TaskExecutionFailed
    from funcx.protocol.failure_text import error_type
    from funcx.sdk.render import error_summary

    tb = TB.format("too noisy", "too noisy") + "\n  \n"
    row = listing_row({"task_id": "t", "status": "failed", "exception": tb})
    assert row["error"] == error_line(tb) == error_summary(TaskExecutionFailed(tb)) \
        == "ValueError: too noisy"
    assert row["error_type"] == error_type(row["error"]) == "ValueError"
    assert error_type("numpy.linalg.LinAlgError: singular") == "numpy.linalg.LinAlgError"
    long = listing_row({"task_id": "t", "status": "failed", "exception": "E: " + "x" * 999})
    assert long["error"] == error_line("E: " + "x" * 999) and len(long["error"]) == 300
    assert listing_row({"task_id": "t", "status": "cancelled"})["error"] == "cancelled"
