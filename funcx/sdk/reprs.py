"""Rich HTML reprs (templates in ``html/``) with a ``text/plain`` fallback, so a
notebook opened without a kernel still reads well.  No repr makes a request."""
from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from funcx.sdk.render import error_summary, error_text, output_lines, status_color


@cache
def template(name: str) -> Template:
    return Template((Path(__file__).parent / "html" / f"{name}.html").read_text())


def render(name: str, **values: Any) -> str:
    return template(name).substitute({k: v for k, v in values.items()})


def esc(value: Any, limit: int = 200) -> str:
    text = repr(value) if not isinstance(value, str) else value
    if len(text) > limit:
        text = text[:limit] + "…"
    return html.escape(text)


def exception_html(exc: BaseException) -> str:
    """A failed task: its error in one line (``ValueError: too noisy``), then,
    folded, what it printed and its remote traceback with source lines."""
    detail = "\n".join([*output_lines(exc), *error_text(exc).splitlines()])
    return (f"<details><summary style='color:#c62828; cursor:pointer'><code>"
            f"{esc(error_summary(exc), 400)}</code></summary>"
            f"<pre style='margin:2px 0 0 0; font-size:12px'>{esc(detail, 20_000)}</pre></details>")


def task_html(kind: str, task_id: str | None, status: str, result: Any = None,
              exception: BaseException | None = None, done: bool = False,
              output: str = "") -> str:
    """A task (or future) as HTML: id, status badge, and its result, or its
    error (:func:`exception_html`); ``output`` is what it printed, if shown."""
    if exception is not None:
        body = exception_html(exception)
    elif done:
        body = f"result: <code>{esc(result)}</code>"
    else:
        body = "waiting for the result…"
    if output.strip() and exception is None:
        body += (f"<pre style='margin:2px 0 0 0; font-size:12px; color:#555'>"
                 f"{esc(output.rstrip(), 20_000)}</pre>")
    return render("task", kind=kind, task_id=html.escape(str(task_id or "(not yet submitted)")),
                  status=html.escape(status), color=status_color(status), body=body)


class TaskRecord(dict):
    """A task's status dict (``get_task`` / ``get_batch_result``) that renders in notebooks."""

    def _repr_html_(self) -> str:
        return task_html("Task", self.get("task_id"), self.get("status", "?"), self.get("result"),
                         self.get("exception"), done=not self.get("pending", True))


class EndpointStatus(dict):
    """``get_endpoint_status`` answer that renders in notebooks."""

    endpoint_id: str = ""

    def _repr_html_(self) -> str:
        d = self.get("details", {})
        st = self.get("status", "?")
        return render("endpoint_status", endpoint=html.escape(self.endpoint_id), status=st,
                      color=status_color(st), managers=d.get("managers", 0),
                      workers=d.get("total_workers", 0), idle=d.get("idle_workers", 0),
                      outstanding=d.get("outstanding_tasks", 0))


class TaskStatus(TaskRecord):
    """``get_task_status``'s answer: the documented status block (a dict with a
    ``"status"`` key) that also compares equal to its status string, so code
    written against a bare string (``== "success"``) keeps working."""

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.get("status") == other
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = None  # type: ignore[assignment]


class SearchResults(list):
    """Search hits: a list of dicts that prints as a table."""

    def __init__(self, hits: list[dict], total: int, offset: int):
        super().__init__(hits)
        self.total, self.offset = total, offset

    def __str__(self) -> str:
        if not self:
            return "(no results)"
        cols = [c for c in ("function_name", "function_uuid", "name", "uuid", "description", "owner")
                if any(c in h for h in self)]
        width = {c: max(len(c), *(len(str(h.get(c) or "")[:60]) for h in self)) for c in cols}
        line = " | ".join(c.ljust(width[c]) for c in cols)
        rows = [" | ".join(str(h.get(c) or "")[:60].ljust(width[c]) for c in cols) for h in self]
        return "\n".join([line, "-+-".join("-" * width[c] for c in cols), *rows,
                          f"({len(self)} of {self.total})"])


#: the documents' name for search_function's answer
FunctionSearchResults = SearchResults
