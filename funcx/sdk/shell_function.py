"""Shell and MPI commands as functions (Globus Compute's ``ShellFunction`` and
``MPIFunction``).

A :class:`ShellFunction` is a callable object holding a command *template*;
calling it (on the endpoint, or locally) formats the template with the
call's keyword arguments, runs it with ``/bin/bash -c`` and answers a
:class:`ShellResult` (or a plain dict with ``return_dict=True``, readable by
any language).  A non-zero exit is a result, not a failure: the task
succeeds and ``returncode`` says how the command ended; a command that runs
past ``walltime`` seconds is killed (its whole process group) and answers
``returncode`` 124, the ``timeout(1)`` convention.

Where it runs: on an endpoint, each task's command runs in a directory of its
own, ``$FUNCX_TASK_SANDBOX_DIR`` = ``<working_dir>/<task id>/`` (the
endpoint's ``working_dir``, where its workers start), created for the task and
kept afterwards so that files the command writes (``echo hi > out.txt``) can
be collected; ``$FUNCX_TASK_ID`` names the task.  Called outside an endpoint it runs in the current directory.

An :class:`MPIFunction` prefixes its command with ``$PARSL_MPI_PREFIX``, the
launcher command (``mpiexec -n 4 --host a:2,b:2``, ``srun -N 2 ...``) that an
endpoint in MPI mode sets for each task from its ``resource_specification``
(see :mod:`endpoint.mpi`).
"""
from __future__ import annotations

import os
import signal
import string
import subprocess
import tempfile
from collections import deque
from typing import Any

#: the returncode of a command killed at its walltime (as ``timeout(1)`` answers)
WALLTIME_RETURNCODE = 124
#: the task's own directory on an endpoint, ``<worker dir>/<task id>`` (set by the worker)
SANDBOX_VAR = "FUNCX_TASK_SANDBOX_DIR"
#: the launcher prefix an endpoint in MPI mode sets for each MPI task
MPI_PREFIX_VAR = "PARSL_MPI_PREFIX"
#: seconds between SIGTERM and SIGKILL for a command past its walltime
KILL_GRACE_S = 2.0


class ShellCommandError(ValueError):
    """A ShellFunction that cannot be run as asked: its template names an
    argument the call did not give, or an MPIFunction ran without MPI resources."""


class ShellResult:
    """What a shell command did: the formatted ``cmd``, the last
    ``snippet_lines`` lines of its ``stdout`` and ``stderr``, its
    ``returncode`` and, when it did not end by itself, ``exception_name``
    (``"subprocess.TimeoutExpired"`` at its walltime)."""

    def __init__(self, cmd: str, stdout: str, stderr: str, returncode: int,
                 exception_name: str | None = None):
        self.cmd = cmd
        self.stdout = stdout
        self.stderr = stderr
        self.returncode = returncode
        self.exception_name = exception_name

    def as_dict(self) -> dict[str, Any]:
        """The five fields as a plain dict (``return_dict=True`` answers this)."""
        return {"cmd": self.cmd, "stdout": self.stdout, "stderr": self.stderr,
                "returncode": self.returncode, "exception_name": self.exception_name}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShellResult) and self.as_dict() == other.as_dict()

    def __str__(self) -> str:
        return self.stdout

    def __repr__(self) -> str:
        extra = f", exception_name={self.exception_name!r}" if self.exception_name else ""
        return f"ShellResult(cmd={self.cmd!r}, returncode={self.returncode}{extra})"


def template_fields(cmd: str) -> list[str]:
    """The argument names a command template uses (``"echo {x} {y}"`` -> x, y)."""
    out: list[str] = []
    for _, name, _, _ in string.Formatter().parse(cmd):
        if name is not None and name != "":
            base = name.split(".")[0].split("[")[0]
            if base not in out:
                out.append(base)
    return out


def format_command(cmd: str, kwargs: dict[str, Any]) -> str:
    """``cmd`` with ``kwargs`` formatted in; a named argument the call lacks (or a
    positional ``{}``) is a :class:`ShellCommandError` naming it."""
    missing = [n for n in template_fields(cmd) if n not in kwargs]
    if any(n.isdigit() for n in missing) or "{}" in cmd.replace("{{", "").replace("}}", ""):
        raise ShellCommandError(f"the command template {cmd!r} has a positional field: "
                                f"name every field ({{message}}) and pass it as a keyword")
    if missing:
        raise ShellCommandError(f"the command template {cmd!r} names "
                                f"{', '.join(missing)} but the call did not give "
                                f"{', '.join(n + '=' for n in missing)}")
    try:
        return cmd.format(**kwargs)
    except (IndexError, KeyError, ValueError, AttributeError) as e:
        raise ShellCommandError(f"cannot format the command template {cmd!r}: "
                                f"{type(e).__name__}: {e}") from None


def last_lines(path: str, n: int) -> str:
    """The last ``n`` lines of the file at ``path`` (all of them if ``n`` is
    negative, none if 0); undecodable bytes are replaced."""
    if n == 0:
        return ""
    with open(path, "rb") as f:
        lines = list(f) if n < 0 else list(deque(f, maxlen=n))
    return b"".join(lines).decode("utf-8", errors="replace")


def task_directory() -> str | None:
    """The per-task directory a command runs in on an endpoint (created):
    ``$FUNCX_TASK_SANDBOX_DIR``, set by the worker; else None, not on an
    endpoint (run in the current directory)."""
    path = os.environ.get(SANDBOX_VAR)
    if not path:
        return None
    os.makedirs(path, exist_ok=True)
    return path


def _stop(proc: subprocess.Popen) -> None:
    """End ``proc`` and everything it started: SIGTERM to its process group,
    SIGKILL if it is still there after KILL_GRACE_S."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


class ShellFunction:
    """A shell command template run as a function.

    ``cmd``: the template, formatted with the call's keyword arguments
    (``"echo {message} > out.txt"``; write ``{{``/``}}`` for literal braces).
    ``stdout``/``stderr``: files (relative ones in the task's directory) that
    keep the streams whole; by default temporary files, removed after their
    last ``snippet_lines`` lines are read.  ``walltime``: seconds before the
    command is killed (returncode 124).  ``name``: the name it registers
    under (default ``shell_<first word of cmd>``).  ``return_dict``: answer a
    dict instead of a :class:`ShellResult`."""

    def __init__(self, cmd: str, stdout: str | None = None, stderr: str | None = None,
                 walltime: float | None = None, snippet_lines: int = 1000,
                 name: str | None = None, return_dict: bool = False):
        if not isinstance(cmd, str) or not cmd.strip():
            raise ShellCommandError("a ShellFunction needs a command (a non-empty string)")
        if walltime is not None and (isinstance(walltime, bool)
                                     or not isinstance(walltime, (int, float))
                                     or not 0 < walltime < float("inf")):
            raise ShellCommandError(f"walltime must be a positive number of seconds or None, "
                                    f"not {walltime!r}")
        if isinstance(snippet_lines, bool) or not isinstance(snippet_lines, int):
            raise ShellCommandError(f"snippet_lines must be a whole number, not "
                                    f"{snippet_lines!r}")
        self.cmd = cmd
        self.stdout = stdout
        self.stderr = stderr
        self.walltime = walltime
        self.snippet_lines = snippet_lines
        self.return_dict = return_dict
        self.__name__ = name or self._default_name()
        self.__qualname__ = self.__name__
        self.__doc__ = f"{type(self).__name__}: {cmd}"

    def _default_name(self) -> str:
        word = self.cmd.split()[0].rsplit("/", 1)[-1]
        word = "".join(c if c.isalnum() or c in "_-." else "_" for c in word)[:64]
        return f"{'mpi' if isinstance(self, MPIFunction) else 'shell'}_{word or 'command'}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cmd!r})"

    def command_line(self, **kwargs: Any) -> str:
        """The command this call runs: the template with ``kwargs`` formatted in."""
        return format_command(self.cmd, kwargs)

    def __call__(self, **kwargs: Any) -> ShellResult | dict[str, Any]:
        result = self.execute(self.command_line(**kwargs))
        return result.as_dict() if self.return_dict else result

    def execute(self, cmd: str) -> ShellResult:
        """Run ``cmd`` (already formatted) in the task's directory."""
        cwd = task_directory()
        streams, temporary = [], []
        for given in (self.stdout, self.stderr):
            if given:
                path = os.path.join(cwd or os.getcwd(), os.path.expanduser(given))
            else:
                fd, path = tempfile.mkstemp(prefix="funcx-shell-", suffix=".out")
                os.close(fd)
                temporary.append(path)
            streams.append(path)
        try:
            with open(streams[0], "wb") as out, open(streams[1], "wb") as err:
                proc = subprocess.Popen(cmd, shell=True, executable="/bin/bash", cwd=cwd,
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        start_new_session=True)
                exception_name = None
                try:
                    returncode = proc.wait(timeout=self.walltime)
                except subprocess.TimeoutExpired:
                    _stop(proc)
                    returncode, exception_name = WALLTIME_RETURNCODE, "subprocess.TimeoutExpired"
            return ShellResult(cmd, last_lines(streams[0], self.snippet_lines),
                               last_lines(streams[1], self.snippet_lines), returncode,
                               exception_name)
        finally:
            for path in temporary:
                try:
                    os.unlink(path)
                except OSError:
                    pass


class MPIFunction(ShellFunction):
    """A shell command launched across the nodes and ranks of the task's
    ``resource_specification`` (``{"num_nodes": 2, "ranks_per_node": 4}``) by
    the endpoint's MPI launcher: the command runs as ``$PARSL_MPI_PREFIX cmd``
    (e.g. ``mpiexec -n 8 --host a:4,b:4 cmd``).  The endpoint must be in MPI
    mode (``Config(mpi_launcher=...)``); elsewhere the call fails saying so."""

    def command_line(self, **kwargs: Any) -> str:
        prefix = os.environ.get(MPI_PREFIX_VAR, "").strip()
        if not prefix:
            raise ShellCommandError(
                f"${MPI_PREFIX_VAR} is not set: an MPIFunction runs on an endpoint in MPI "
                f"mode (Config(mpi_launcher='mpiexec'|'srun'|'aprun')) and needs a "
                f"resource_specification such as {{'num_nodes': 1, 'ranks_per_node': 2}}")
        return f"{prefix} {format_command(self.cmd, kwargs)}"
