"""How a task's captured stdout / stderr is bounded: the pure decision of what
to keep, and the marker line that says, inside the text, what was cut and
which setting keeps more.

A stream longer than its limit keeps its beginning and its end (half the limit
each: how a run started, and how it ended, are what a reader looks for) with
the marker in between.  The same rule is applied on the worker (per stream,
``FUNCX_TASK_OUTPUT_MAX`` bytes) and again by the service's ingester, which
fits the output into what ``FUNCX_MAX_RESULT_BYTES`` leaves beside the result
itself: output is cut, never the reason a result is refused.
"""
from __future__ import annotations

#: the streams a task's output is captured from, in the order they travel
STREAMS = ("stdout", "stderr")
#: the worker's setting: bytes of each stream kept with a result
WORKER_SETTING = "FUNCX_TASK_OUTPUT_MAX"
#: the service's setting: the whole result, output included, stays under it
SERVICE_SETTING = "FUNCX_MAX_RESULT_BYTES"
#: every marker starts so (a reader or test can find a cut)
MARKER_PREFIX = "[funcx: "
#: what an exception's display shows of each stream: its last lines, at most
DISPLAY_LINES = 20
DISPLAY_CHARS = 4000


def split(total: int, limit: int) -> tuple[int, int]:
    """``(head, tail)``: how much of a stream of ``total`` units to keep from its
    start and from its end so that at most ``limit`` are kept."""
    limit = max(0, limit)
    if total <= limit:
        return total, 0
    head = limit // 2
    return head, limit - head


def marker(cut: int, stream: str, limit: int, setting: str, unit: str = "bytes") -> str:
    """The line put where ``cut`` units of ``stream`` were left out."""
    where = "on the endpoint" if setting == WORKER_SETTING else "on the service"
    return (f"\n{MARKER_PREFIX}{cut} {unit} of {stream} cut here; {limit} {unit} are kept: "
            f"raise {setting} {where} to keep more]\n")


def utf8_size(text: str) -> int:
    """Bytes ``text`` takes in UTF-8 (what limits in bytes count)."""
    return len(text.encode("utf-8", "surrogatepass"))


def cut_text(text: str, limit: int, stream: str, setting: str = SERVICE_SETTING) -> str:
    """``text`` bounded to ``limit`` bytes of UTF-8 (plus the marker when
    cut), never splitting a character."""
    data = text.encode("utf-8", "surrogatepass")
    head, tail = split(len(data), limit)
    if head + tail >= len(data):
        return text
    first = data[:head].decode("utf-8", "ignore")  # a character cut in two is left out
    last = data[len(data) - tail:].decode("utf-8", "ignore") if tail else ""
    cut = len(data) - utf8_size(first) - utf8_size(last)
    return first + marker(cut, stream, limit, setting) + last


#: bytes a marker of :func:`fit` takes at most (reserved beside the text it keeps)
MARKER_ROOM = utf8_size(marker(10**18, "stdout", 10**18, SERVICE_SETTING))


def fit(outputs: dict[str, str], budget: int) -> dict[str, str]:
    """``outputs`` (stream -> text) cut so that together they take at most
    ``budget`` bytes of UTF-8, markers included (where the budget leaves room
    for a marker; a marker is kept even when it does not): each stream gets
    an equal share, and what one does not need goes to the other."""
    budget = max(0, budget)
    sizes = {s: utf8_size(t) for s, t in outputs.items()}
    if sum(sizes.values()) <= budget:
        return dict(outputs)
    small_first = sorted(outputs, key=lambda s: sizes[s])
    out: dict[str, str] = {}
    left = budget
    for i, stream in enumerate(small_first):
        share = left // (len(small_first) - i)
        if sizes[stream] <= share:
            out[stream] = outputs[stream]
            left -= sizes[stream]
        else:
            out[stream] = cut_text(outputs[stream], max(0, share - MARKER_ROOM), stream)
            left -= share
    return {s: out[s] for s in outputs}


def display_tail(text: str, stream: str, lines: int = DISPLAY_LINES,
                 chars: int = DISPLAY_CHARS) -> list[str]:
    """The last lines of ``text`` an exception display shows (at most
    ``lines`` lines and about ``chars`` characters), after a line saying how
    many earlier ones the exception's ``.stdout`` / ``.stderr`` still has."""
    every = text.rstrip("\n").splitlines()
    shown: list[str] = []
    size = 0
    for line in reversed(every[-lines:] if lines > 0 else []):
        if size + len(line) > chars:
            if not shown:  # one long last line: its end
                shown.append("…" + line[len(line) - chars:])
            break
        shown.append(line)
        size += len(line) + 1
    shown.reverse()
    hidden = len(every) - len(shown)
    if hidden:
        shown.insert(0, f"{MARKER_PREFIX}{hidden} earlier line(s) not shown: the "
                        f"exception's .{stream} has all of it]")
    return shown
