"""How a task group's progress looks in HTML: the pieces the live
``TaskMonitor`` widget shows, and the whole static page that a notebook keeps
once the group finishes (readable without a kernel).  No request is made
here: everything comes from a :class:`~funcx.sdk.progress.GroupProgress`."""
from __future__ import annotations

import html

from funcx.sdk.progress import FunctionProgress, GroupProgress, format_seconds
from funcx.sdk.render import status_color

_BADGE = ("background:{color}; color:white; border-radius:3px; padding:0 6px; "
          "margin-right:4px; white-space:nowrap")
_TABLE = "font-size:12px; border-collapse:collapse"
_CELL = "padding:1px 8px 1px 0; text-align:left; vertical-align:top"


def header_html(p: GroupProgress, task_group_id: str, now: float | None = None) -> str:
    """``task group 1a2b3c4d · 12 / 24 done · elapsed 0:05 · ETA 4 s``."""
    parts = [f"<b>{p.done}</b> / {p.total} done"]
    elapsed = p.elapsed(now)
    if p.finished:
        parts.append(f"in {format_seconds(elapsed)}")
    else:
        parts += [f"elapsed {format_seconds(elapsed)}", f"ETA {format_seconds(p.eta(now))}"]
    return (f"<span title='{html.escape(task_group_id)}'>task group "
            f"<code>{html.escape(task_group_id[:8])}</code></span> · " + " · ".join(parts))


def counts_html(counts: dict[str, int]) -> str:
    """A coloured badge per status: ``success: 22  failed: 2``."""
    return " ".join(f"<span style='{_BADGE.format(color=status_color(k))}'>"
                    f"{html.escape(k)}: {v}</span>" for k, v in sorted(counts.items()))


def function_counts_html(f: FunctionProgress) -> str:
    """What follows a function's bar: ``8 / 10`` and how many failed."""
    text = f"{f.done} / {f.total}"
    if f.failed:
        text += f" · <span style='color:{status_color('failed')}'>{f.failed} failed</span>"
    return text


def failures_html(p: GroupProgress) -> str:
    """Failures grouped by their error, with counts and a sample task id."""
    groups = p.failures()
    if not groups:
        return ""
    rows = "".join(
        f"<tr><td style='{_CELL}; color:{status_color('failed')}'><b>{g.count} ×</b></td>"
        f"<td style='{_CELL}'><code>{html.escape(g.error)}</code></td>"
        f"<td style='{_CELL}'>{html.escape(g.function)}</td>"
        f"<td style='{_CELL}'>e.g. <code title='{html.escape(g.sample_task_id)}'>"
        f"{html.escape(g.sample_task_id)}</code></td></tr>" for g in groups)
    return (f"<div style='margin-top:4px'><b>Failures</b></div><table style='{_TABLE}'>"
            f"<tr><th style='{_CELL}'>count</th><th style='{_CELL}'>error</th>"
            f"<th style='{_CELL}'>function</th><th style='{_CELL}'>sample task</th></tr>"
            f"{rows}</table>")


def latest_html(p: GroupProgress, n: int) -> str:
    """The latest tasks: short id, function name, status, duration."""
    if n <= 0 or not p.rows:
        return ""
    rows = "".join(
        f"<tr><td style='{_CELL}'><code title='{html.escape(r['task_id'])}'>"
        f"{html.escape(r['task_id'][:8])}</code></td>"
        f"<td style='{_CELL}'>{html.escape(p.function_name(r.get('function_id')))}</td>"
        f"<td style='{_CELL}; color:{status_color(r.get('status'), 'inherit')}'>"
        f"{html.escape(str(r.get('status')))}</td>"
        f"<td style='{_CELL}'>{format_seconds(p.duration(r)) if p.duration(r) is not None else ''}"
        f"</td></tr>" for r in p.latest(n))
    return (f"<details style='margin-top:4px'><summary>latest tasks</summary>"
            f"<table style='{_TABLE}'><tr><th style='{_CELL}'>task</th>"
            f"<th style='{_CELL}'>function</th><th style='{_CELL}'>status</th>"
            f"<th style='{_CELL}'>time</th></tr>{rows}</table></details>")


def bar_html(f: FunctionProgress) -> str:
    """A static progress bar (CSS): successes green, failures red."""
    total = max(1, f.total)
    ok = 100 * (f.done - f.failed) / total
    bad = 100 * f.failed / total
    return ("<div style='display:inline-block; width:320px; height:14px; background:#e0e0e0; "
            "border-radius:2px; overflow:hidden; vertical-align:middle'>"
            f"<div style='float:left; height:100%; width:{ok:.1f}%; "
            f"background:{status_color('success')}'></div>"
            f"<div style='float:left; height:100%; width:{bad:.1f}%; "
            f"background:{status_color('failed')}'></div></div>")


def progress_html(p: GroupProgress, task_group_id: str, rows: int = 10,
                  now: float | None = None) -> str:
    """The whole monitor as static HTML: header, a bar per function, failures, latest tasks."""
    bars = "".join(
        f"<tr><td style='{_CELL}'><b>{html.escape(f.name)}</b></td>"
        f"<td style='{_CELL}'>{bar_html(f)}</td>"
        f"<td style='{_CELL}'>{function_counts_html(f)}</td></tr>" for f in p.by_function())
    return ("<div class='funcx-monitor' style='font-family:sans-serif; font-size:13px'>"
            f"<div>{header_html(p, task_group_id, now)}</div>"
            f"<div style='margin:4px 0'>{counts_html(p.counts())}</div>"
            f"<table style='{_TABLE}'>{bars}</table>"
            f"{failures_html(p)}{latest_html(p, rows)}</div>")
