"""Never lose a result (issue 16 point 1), at a real terminal: ``funcx`` runs
as a process whose stdin and stderr are a pseudo-terminal (``os.openpty``)
and whose stdout is redirected to a file, as ``funcx map ... > out.jsonl``
typed at a shell.  The results must land in the file, in input order, and
only there; the group or task id must reach the terminal before the command
waits; Ctrl-C (exit 130) and ``--timeout`` (exit 6) must say how to resume,
and ``funcx map --resume GROUP --from N`` must print the rest."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

TAG = uuid.uuid4().hex[:8]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")
GROUP = re.compile(r"task group ([0-9a-f-]{36})")


class Terminal:
    """``funcx ARGS`` with stdin and stderr on a pseudo-terminal, stdout to a file."""

    def __init__(self, args: list[str], stdout: Path):
        self.master, slave = os.openpty()
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"}
        with open(stdout, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "funcx_cli.main", *args],
                                         stdin=slave, stdout=out, stderr=slave, env=env)
        os.close(slave)
        self.raw = b""

    @property
    def screen(self) -> str:
        """What the terminal showed, without escape sequences."""
        return ANSI.sub("", self.raw.decode("utf-8", "replace"))

    def read_until(self, pattern: re.Pattern | None, timeout: float) -> re.Match | None:
        """Read the terminal until ``pattern`` shows (its match) or, with no
        pattern, until the process has exited; fail at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pattern is not None and (m := pattern.search(self.screen)):
                return m
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: every writer of the terminal has gone
                    data = b""
                self.raw += data
                if data:
                    continue
            if self.proc.poll() is not None and not ready:
                if pattern is None:
                    return None
                break
            if self.proc.poll() is not None and ready and pattern is None:
                return None
        self.proc.kill()
        raise AssertionError(f"timed out waiting for {pattern!r}; the terminal showed:\n"
                             f"{self.screen}")

    def finish(self, timeout: float = 120) -> int:
        self.read_until(None, timeout)
        rc = self.proc.wait(10)
        os.close(self.master)
        return rc


FUNCTIONS = {}


@pytest.fixture(scope="module")
def fns(fxc, endpoint):
    def square(x):
        return x * x

    def nap(seconds, tag=""):
        import time

        time.sleep(seconds)
        return f"{tag}{seconds}"

    return {"square": fxc.register_function(square, function_name=f"pty-square-{TAG}"),
            "nap": fxc.register_function(nap, function_name=f"pty-nap-{TAG}")}


@pytest.fixture(scope="module")
def offline_ep(fxc):
    """An endpoint registered with no agent: it is offline and tasks wait there."""
    name = f"pty-offline-{TAG}"
    return {"name": name, "id": fxc.register_endpoint(name)["endpoint_id"]}


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_map_at_a_terminal_writes_results_to_the_redirected_file(tmp_path, fns, endpoint):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("[3]\n4\n{\"args\": [5]}\n{\"kwargs\": {\"x\": 6}}\n")
    term = Terminal(["map", f"pty-square-{TAG}", "-e", "pytest-ep", "-i", str(inp)], out)
    group = term.read_until(GROUP, 120).group(1)  # the group id shows before the results
    assert term.finish() == 0, term.screen
    rows = lines_of(out)
    assert [r["result"] for r in rows] == [9, 16, 25, 36]
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert all(r["status"] == "success" for r in rows)
    assert '"result"' not in term.screen  # data never on the terminal
    assert str(uuid.UUID(group)) == group


def test_map_interrupted_says_how_to_resume(tmp_path, fns, offline_ep, fxc):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("[1]\n[2]\n")
    term = Terminal(["map", fns["square"], "-e", offline_ep["name"], "-i", str(inp)], out)
    group = term.read_until(GROUP, 120).group(1)
    term.read_until(re.compile(r"is offline.*\n?.*--resume", re.S), 60)  # not a blank wait
    term.proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert term.finish() == 130, term.screen
    assert f"funcx map --resume {group} --from 0" in term.screen.replace("\n", "")
    assert out.read_text() == ""
    tids = [r["task_id"] for r in fxc.list_tasks(task_group_id=group)]
    assert len(tids) == 2
    assert {fxc.get_task(t)["status"] for t in tids} <= {"waiting-for-ep", "received"}
    for t in tids:  # the tasks went on waiting; clean up
        fxc.cancel_task(t)


def test_run_interrupted_on_an_offline_endpoint_names_the_task(tmp_path, fns, offline_ep, fxc):
    out = tmp_path / "out.txt"
    term = Terminal(["run", fns["square"], "-e", offline_ep["name"], "7"], out)
    tid = term.read_until(re.compile(r"task ([0-9a-f-]{36}) submitted"), 120).group(1)
    term.read_until(re.compile(r"is offline"), 60)
    term.proc.send_signal(signal.SIGINT)
    assert term.finish() == 130, term.screen
    assert f"funcx task result {tid} --wait" in term.screen.replace("\n", "")
    assert out.read_text() == ""
    fxc.cancel_task(tid)


@pytest.mark.slow  # a real timeout, then the resume (~5 s): the slow CI step
def test_timeout_exit_6_then_resume_prints_the_rest_in_order(tmp_path, fns, endpoint):
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text('[0]\n{"args": [0], "kwargs": {"tag": "b"}}\n[4]\n[0]\n')
    term = Terminal(["map", f"pty-nap-{TAG}", "-e", "pytest-ep", "-i", str(inp),
                     "--timeout", "2"], out)
    group = term.read_until(GROUP, 120).group(1)
    assert term.finish() == 6, term.screen  # the 4 s task cannot be done in 2 s
    m = re.search(r"funcx map --resume ([0-9a-f-]{36}) --from (\d+)", term.screen.replace("\n", ""))
    assert m and m.group(1) == group, term.screen
    first = lines_of(out)
    assert len(first) == int(m.group(2)) < 4
    rest = tmp_path / "rest.jsonl"
    term = Terminal(["map", "--resume", group, "--from", m.group(2)], rest)
    assert term.finish() == 0, term.screen
    rows = first + lines_of(rest)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["result"] for r in rows] == ["0", "b0", "4", "0"]
    again = tmp_path / "again.jsonl"
    term = Terminal(["map", "--resume", group], again)  # the whole group, in input order
    assert term.finish() == 0
    assert lines_of(again) == rows


def test_sigterm_while_waiting_says_how_to_resume(tmp_path, fns, offline_ep, fxc):
    """``kill``, ``timeout`` or a batch job's end: exit 143, with the same hint."""
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text("[1]\n")
    term = Terminal(["map", fns["square"], "-e", offline_ep["id"], "-i", str(inp)], out)
    group = term.read_until(GROUP, 120).group(1)
    term.read_until(re.compile(r"is offline"), 60)
    term.proc.send_signal(signal.SIGTERM)
    assert term.finish() == 143, term.screen
    assert f"funcx map --resume {group} --from 0" in term.screen.replace("\n", "")
    for t in fxc.list_tasks(task_group_id=group):
        fxc.cancel_task(t["task_id"])
