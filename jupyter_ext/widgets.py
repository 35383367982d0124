"""ipywidgets: a live task monitor and an endpoint panel.

The monitor is updated from the service's push channel (the task group's
completion events) by a watcher thread that only sets widget *values*; it
never writes into an ``Output`` widget, whose output would land in whatever
cell runs at that moment.  It stops when every task of the group is done.
"""
from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as w

from funcx.sdk.progress import GroupProgress
from funcx.sdk.render import status_color


def _when(epoch: Any) -> str:
    import datetime

    try:
        return datetime.datetime.fromtimestamp(float(epoch)).strftime("%H:%M:%S")
    except (TypeError, ValueError):
        return ""


class TaskMonitor(w.VBox):
    """Progress of one task group: a bar (done/total), counts by status, and a
    table of the latest tasks, updated as results arrive."""

    def __init__(self, client: Any, task_group_id: str, rows: int = 10, start: bool = True):
        self.client, self.task_group_id, self.n_rows = client, task_group_id, rows
        self.state = GroupProgress()
        self.progress = w.IntProgress(value=0, min=0, max=1, description="tasks",
                                      bar_style="info", layout=w.Layout(width="60%"))
        self.label = w.HTML()
        self.counts_html = w.HTML()
        self.table = w.HTML()
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._functions: dict[str, str] = {}
        super().__init__([w.HBox([self.progress, self.label]), self.counts_html, self.table])
        self.refresh()
        self._thread = None
        if start and not self.finished.is_set():
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name=f"funcx-monitor-{task_group_id[:8]}")
            self._thread.start()

    @property
    def counts(self) -> dict[str, int]:
        return self.state.counts()

    def __repr__(self) -> str:  # the text/plain fallback of a saved notebook
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
        return (f"TaskMonitor(task group {self.task_group_id}: {self.state.done}/"
                f"{self.state.total} done; {counts})")

    def refresh(self) -> None:
        """Reload the group from the service, then redraw."""
        self.state.reload(self.client, self.task_group_id)
        self._draw()

    def _watch(self) -> None:
        try:
            for _ in self.state.follow(self.client, self.task_group_id):
                self._draw()
                if self.finished.is_set() or self._stop.is_set():
                    return
        except Exception as e:  # noqa: BLE001 - the service went away: say so in the widget
            self.label.value = (f"<span style='color:{status_color('failed')}'>stopped: "
                                f"{html.escape(str(e))}</span>")

    def stop(self) -> None:
        self._stop.set()

    def _draw(self) -> None:
        s = self.state
        self.progress.max = max(1, s.total)
        self.progress.value = s.done
        failed = s.counts().get("failed", 0)
        # some failures: warning (the bar still shows how many are done); red only if all failed
        self.progress.bar_style = ("danger" if failed and failed == s.total else
                                   "warning" if failed else "success" if s.finished else "info")
        self.label.value = f"&nbsp;<b>{s.done}</b> / {s.total} done"
        self.counts_html.value = " ".join(
            f"<span style='background:{status_color(k)}; color:white; "
            f"border-radius:3px; padding:0 6px; margin-right:4px'>{html.escape(k)}: {v}</span>"
            for k, v in sorted(s.counts().items()))
        rows = "".join(
            f"<tr style='line-height:1.1'><td><code>{html.escape(r['task_id'][:8])}</code></td>"
            f"<td><code>{html.escape(str(r.get('function_id') or '')[:8])}</code></td>"
            f"<td><code>{html.escape(str(r.get('endpoint_id') or '')[:8])}</code></td>"
            f"<td style='color:{status_color(r.get('status'), 'inherit')}'>"
            f"{html.escape(str(r.get('status')))}</td>"
            f"<td>{_when(r.get('completion_t') or r.get('created_at'))}</td></tr>"
            for r in s.latest(self.n_rows))
        self.table.value = (
            "<table style='font-size:12px'><tr><th>task</th><th>function</th><th>endpoint</th>"
            f"<th>status</th><th>time</th></tr>{rows}</table>")
        if s.finished:
            self.finished.set()


class EndpointPanel(w.VBox):
    """Your endpoints: online/offline, workers, outstanding tasks; a refresh button."""

    def __init__(self, client: Any):
        self.client = client
        self.table = w.HTML()
        self.button = w.Button(description="Refresh", icon="refresh",
                               layout=w.Layout(width="110px"))
        self.button.on_click(lambda _b: self.refresh())
        self.rows: list[dict] = []
        super().__init__([self.button, self.table])
        self.refresh()

    def refresh(self) -> None:
        self.rows = []
        for e in self.client.get_endpoints():
            st = self.client.get_endpoint_status(e["uuid"])
            d = st.get("details", {})
            self.rows.append({"name": e.get("name"), "endpoint_id": e["uuid"],
                              "status": st["status"], "workers": d.get("total_workers", 0),
                              "idle": d.get("idle_workers", 0),
                              "outstanding": d.get("outstanding_tasks", 0)})
        body = "".join(
            f"<tr><td>{html.escape(str(r['name']))}</td><td><code>{r['endpoint_id']}</code></td>"
            f"<td style='color:{status_color(r['status'])}'>{r['status']}</td>"
            f"<td>{r['workers']} ({r['idle']} idle)</td><td>{r['outstanding']}</td></tr>"
            for r in self.rows)
        self.table.value = ("<table style='font-size:12px'><tr><th>name</th><th>endpoint id</th>"
                            "<th>status</th><th>workers</th><th>outstanding</th></tr>"
                            f"{body}</table>")
