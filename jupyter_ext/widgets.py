"""ipywidgets: a live task monitor and an endpoint panel.

The monitor is updated from the service's push channel (the task group's
completion events) by a watcher thread that only sets widget *values*; it
never writes into an ``Output`` widget, whose output would land in whatever
cell runs at that moment.  It stops when every task of the group is done and
every failure's error is known; then the cell's output is replaced (same
display id) by the final state as static HTML and text, so a notebook saved
and reopened without its kernel shows the final counts, not a widget that
can no longer load.
"""
from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as w

from funcx.sdk.hardware import HardwareReport, format_bytes
from funcx.sdk.progress import GroupProgress
from funcx.sdk.progress_html import (
    counts_html,
    failures_html,
    function_counts_html,
    header_html,
    latest_html,
    progress_html,
)
from funcx.sdk.render import status_color

#: seconds between redraws of the elapsed time and ETA while tasks run
TICK_S = 1.0
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class _FunctionBar(w.HBox):
    """One function's row: its name, a bar, ``done / total`` and failures."""

    def __init__(self, name: str):
        self.name = w.HTML(f"<b>{html.escape(name)}</b>", layout=w.Layout(width="160px"))
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info",
                                 layout=w.Layout(width="320px"))
        self.text = w.HTML()
        super().__init__([self.name, self.bar, self.text])


class TaskMonitor(w.VBox):
    """Progress of one task group, as Dask's progress: a bar per function
    (by name), counts by status, failures grouped by their error with a
    sample task id, elapsed time and ETA, and the latest tasks; updated as
    results arrive.  ``progress`` is the bar of the whole group."""

    def __init__(self, client: Any, task_group_id: str, rows: int = 10, start: bool = True):
        self.client, self.task_group_id, self.n_rows = client, task_group_id, rows
        self.state = GroupProgress()
        self.progress = w.IntProgress(value=0, min=0, max=1, description="all tasks",
                                      bar_style="info", layout=w.Layout(width="60%"))
        self.label = w.HTML()
        self.error_html = w.HTML()  # why the watcher stopped (the ticker never overwrites it)
        self.counts_html = w.HTML()
        self.functions = w.VBox()
        self.failures_html = w.HTML()
        self.table = w.HTML()
        self.finished = threading.Event()
        self._stop = threading.Event()
        #: the state's own lock: held while it is read here or folded in by a
        #: watcher; no request to the service is made while it is held
        self._lock = self.state.lock
        self._bars: dict[str, _FunctionBar] = {}
        self._handles: list[Any] = []  # where this monitor is displayed
        super().__init__([self.label, self.error_html, w.HBox([self.progress]), self.counts_html,
                          self.functions, self.failures_html, self.table])
        self.refresh()
        self._thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        if start and not self._complete():
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name=f"funcx-monitor-{task_group_id[:8]}")
            self._thread.start()
            self._ticker = threading.Thread(target=self._tick, daemon=True,
                                            name=f"funcx-monitor-tick-{task_group_id[:8]}")
            self._ticker.start()

    @property
    def counts(self) -> dict[str, int]:
        return self.state.counts()

    def __repr__(self) -> str:  # the text/plain of the display
        return f"TaskMonitor(task group {self.task_group_id}: {self.state.describe()})"

    # ------------------------------------------------------------- display
    def final_bundle(self) -> dict[str, str]:
        """The finished monitor as static output: HTML and plain text."""
        return {"text/html": progress_html(self.state, self.task_group_id, self.n_rows),
                "text/plain": repr(self)}

    def _ipython_display_(self) -> None:
        """Show the live widget under a display id, so the final state can
        replace it in place (a finished group shows its static state at once)."""
        from IPython.display import display

        with self._lock:
            if self._complete():
                bundle: dict[str, Any] = self.final_bundle()
            else:
                bundle = {"text/plain": repr(self),
                          WIDGET_MIME: {"version_major": 2, "version_minor": 0,
                                        "model_id": self.model_id}}
            handle = display(bundle, raw=True, display_id=True)
            if handle is not None:
                self._handles.append(handle)

    def _publish_final(self) -> None:
        """Replace every display of this monitor by its final static state."""
        with self._lock:
            bundle = self.final_bundle()
            for handle in self._handles:
                handle.update(bundle, raw=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the group is done (or ``timeout`` s pass); True if it
        is.  Also makes sure the final state has replaced the live widget."""
        done = self.finished.wait(timeout)
        if done:
            self._publish_final()
        return done

    # ---------------------------------------------------------------- data
    def refresh(self) -> None:
        """Reload the group from the service, then redraw (the requests are
        made without holding the lock: a display or ``wait()`` never waits on them)."""
        self.state.reload(self.client, self.task_group_id)
        self._learn()
        self._draw()

    def _learn(self) -> None:
        """Function names; and once the group is done, the errors no event
        told (requests: called without the lock held)."""
        self.state.resolve_names(self.client)
        with self._lock:
            errors_missing = self.state.finished and not self.state.errors_known
        if errors_missing:
            self.state.load_errors(self.client)

    def _complete(self) -> bool:
        """Finished, with every failure's error known (nothing left to learn)."""
        with self._lock:
            return self.state.finished and self.state.errors_known

    def _watch(self) -> None:
        """Follow the group's pushed completions (GroupProgress.follow) until
        it is complete; a failure is shown in its own line, and the ticker
        stops with the watcher, so neither the message nor a frozen clock is
        left ticking."""
        try:
            for _ in self.state.follow(self.client, self.task_group_id):
                self._learn()
                self._draw()
                if self._complete():
                    self._publish_final()
                    return
                if self._stop.is_set():
                    return
        except Exception as e:  # noqa: BLE001 - the service went away: say so in the widget
            self.error_html.value = (f"<span style='color:{status_color('failed')}'>stopped "
                                     f"watching: {html.escape(str(e))}</span>")
        finally:
            self._stop.set()

    def _tick(self) -> None:
        """Keep the elapsed time and ETA moving between results."""
        while not self._stop.wait(TICK_S) and not self.finished.is_set():
            with self._lock:
                self.label.value = header_html(self.state, self.task_group_id)

    def stop(self) -> None:
        self._stop.set()

    def _draw(self) -> None:
        with self._lock:
            s = self.state
            self.progress.max = max(1, s.total)
            self.progress.value = s.done
            self.progress.bar_style = _bar_style(s.counts().get("failed", 0), s.done, s.total)
            self.label.value = header_html(s, self.task_group_id)
            self.counts_html.value = counts_html(s.counts())
            for f in s.by_function():
                row = self._bars.get(f.function_id)
                if row is None:
                    row = self._bars[f.function_id] = _FunctionBar(f.name)
                    self.functions.children = (*self.functions.children, row)
                row.name.value = f"<b>{html.escape(f.name)}</b>"
                row.bar.max, row.bar.value = max(1, f.total), f.done
                row.bar.bar_style = _bar_style(f.failed, f.done, f.total)
                row.text.value = "&nbsp;" + function_counts_html(f)
            self.failures_html.value = failures_html(s)
            self.table.value = latest_html(s, self.n_rows)
            if self._complete():
                self.finished.set()


def _bar_style(failed: int, done: int, total: int) -> str:
    """Some failures: warning (the bar still shows how many are done); red
    only if all failed; green when all succeeded."""
    if failed and failed == total:
        return "danger"
    if failed:
        return "warning"
    return "success" if total and done == total else "info"


class EndpointPanel(w.VBox):
    """Your endpoints: online/offline, workers, outstanding tasks; a refresh
    button; below, each online endpoint's workers' hardware (host, CPUs,
    accelerator, CPU model, memory: ``get_worker_hardware_details``)."""

    def __init__(self, client: Any):
        self.client = client
        self.table = w.HTML()
        self.hardware_table = w.HTML()
        self.button = w.Button(description="Refresh", icon="refresh",
                               layout=w.Layout(width="110px"))
        self.button.on_click(lambda _b: self.refresh())
        self.rows: list[dict] = []
        #: one row per worker of every endpoint (HardwareReport.workers, with its endpoint)
        self.hardware: list[dict] = []
        super().__init__([self.button, self.table, self.hardware_table])
        self.refresh()

    def refresh(self) -> None:
        self.rows, self.hardware = [], []
        for e in self.client.get_endpoints():
            st = self.client.get_endpoint_status(e["uuid"])
            d = st.get("details", {})
            report = HardwareReport.from_status(e["uuid"], st)
            self.hardware += [{"endpoint": e.get("name"), **row} for row in report.workers()]
            self.rows.append({"name": e.get("name"), "endpoint_id": e["uuid"],
                              "status": st["status"], "workers": d.get("total_workers", 0),
                              "idle": d.get("idle_workers", 0),
                              "outstanding": d.get("outstanding_tasks", 0)})
        cell = "padding:2px 14px 2px 0; text-align:left"
        body = "".join(
            f"<tr><td style='{cell}'><b>{html.escape(str(r['name']))}</b></td>"
            f"<td style='{cell}'><code>{html.escape(r['endpoint_id'])}</code></td>"
            f"<td style='{cell}; color:{status_color(r['status'])}'>"
            f"{html.escape(str(r['status']))}</td>"
            f"<td style='{cell}'>{r['workers']} ({r['idle']} idle)</td>"
            f"<td style='{cell}'>{r['outstanding']}</td></tr>"
            for r in self.rows)
        head = "".join(f"<th style='{cell}'>{h}</th>"
                       for h in ("name", "endpoint id", "status", "workers", "outstanding tasks"))
        self.table.value = ("<table style='font-size:13px; border-collapse:collapse'>"
                            f"<tr>{head}</tr>{body}</table>")
        self.hardware_table.value = hardware_html(self.hardware)


def hardware_html(rows: list[dict]) -> str:
    """The workers' hardware as an HTML table ("" when no worker reported any)."""
    if not rows:
        return ""
    cell = "padding:2px 14px 2px 0; text-align:left"
    body = "".join(
        "<tr>" + "".join(f"<td style='{cell}'>{html.escape(str(v))}</td>" for v in (
            r["endpoint"], r["hostname"], r["worker"],
            f"{r['cpus']} ({'pinned' if r['pinned'] else 'not pinned'})",
            r["accelerator"] or "-", r["cpu_model"], r["logical_cores"],
            f"{format_bytes(r['memory_available'])} / {format_bytes(r['memory_total'])}"))
        + "</tr>" for r in rows)
    head = "".join(f"<th style='{cell}'>{h}</th>" for h in (
        "endpoint", "host", "worker", "CPUs", "accelerator", "CPU model", "cores",
        "memory (available / total)"))
    return ("<div style='font-size:13px; margin-top:6px'><b>Workers' hardware</b></div>"
            "<table style='font-size:13px; border-collapse:collapse'>"
            f"<tr>{head}</tr>{body}</table>")
