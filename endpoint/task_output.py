"""Capturing one task's stdout and stderr in its worker, at the file-descriptor
level, so that what the function prints (``print``, ``sys.stderr.write``),
what its child processes write (``os.system("echo hi")``, ``subprocess``)
and what C code writes to fd 1 / fd 2 all land with *this* task's result.

For the duration of a task, fd 1 and fd 2 of the worker point at two files
of that task alone (``dup2``): ``<FUNCX_TASK_OUTPUT_PREFIX>.stdout`` /
``.stderr``, new files each task (emptied once read, removed when the slot's
next task starts), or unlinked temporary files without a prefix; afterwards
Python's and C's stdio buffers are flushed and the worker's own descriptors
are restored.  A worker runs one task at a time, so tasks running side by
side never mix their output.  Two leftovers are not the task's any more: a
child process that outlives its task keeps writing into that task's file
(never into the next one's), and is lost; a *thread* the function left
running shares the worker's descriptors, so what it prints lands in the
worker's next task.  The block's ``.sh.out`` no longer sees task output.

Each stream is read back bounded (``FUNCX_TASK_OUTPUT_MAX`` bytes: its start
and its end, with a marker between saying how much was cut; see
:mod:`funcx.protocol.output_limits`), without reading the middle into memory.
"""
from __future__ import annotations

import ctypes
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from types import TracebackType

from funcx.defaults import DEFAULTS, setting
from funcx.protocol.output_limits import MARKER_PREFIX, STREAMS, WORKER_SETTING, marker, split

#: the descriptors captured, with the stream each one is
FDS = {1: "stdout", 2: "stderr"}


def _load_fflush() -> Callable[[], object] | None:
    """The C library's ``fflush(NULL)`` (a C extension's ``printf`` into a file
    is buffered by C stdio), looked up once; None where there is none."""
    try:
        fflush = ctypes.CDLL(None).fflush
    except (OSError, AttributeError):
        return None
    return lambda: fflush(None)


_FFLUSH = _load_fflush()


def flush_all() -> None:
    """Flush every buffer that may hold output for fd 1 or 2."""
    for stream in {id(s): s for s in (sys.stdout, sys.stderr, sys.__stdout__,
                                      sys.__stderr__) if s is not None}.values():
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # closed or replaced by the function: nothing of ours to flush
    if _FFLUSH is not None:
        _FFLUSH()


def output_limit() -> int:
    """``FUNCX_TASK_OUTPUT_MAX``; where its value is not a whole number of
    bytes (>= 0) the default, with a line on stderr (the block's log) saying
    so: a typo in the endpoint's environment must not stop its workers."""
    try:
        value = int(setting("TASK_OUTPUT_MAX"))
    except ValueError:
        value = -1
    if value >= 0:
        return value
    default = int(DEFAULTS["TASK_OUTPUT_MAX"])  # type: ignore[call-overload]
    print(f"funcx worker: {WORKER_SETTING}={os.environ.get(WORKER_SETTING, '')[:40]!r} is not "
          f"a number of bytes >= 0; keeping {default} bytes of each task's stdout and stderr",
          file=sys.stderr, flush=True)
    return default


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def read_bounded(fd: int, limit: int, stream: str) -> str:
    """The text of captured file ``fd``: all of it when it fits in ``limit``
    bytes, else its start and end with the marker between (the middle is
    never read)."""
    total = os.fstat(fd).st_size
    if total == 0:
        return ""
    head, tail = split(total, limit)
    first = os.pread(fd, head, 0) if head else b""
    if head + tail >= total:
        return _decode(first)
    last = os.pread(fd, tail, total - tail) if tail else b""
    return _decode(first) + marker(total - head - tail, stream, limit, WORKER_SETTING) + _decode(last)


def _anonymous_file(directory: str | None) -> int:
    """A new unnamed file (O_TMPFILE where the file system has it)."""
    where = directory or tempfile.gettempdir()
    try:
        return os.open(where, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):  # not Linux, or a file system without it
        fd, path = tempfile.mkstemp(dir=where)
        os.unlink(path)
        return fd


class OutputCapture:
    """Context manager: fd 1 and 2 go to temporary files while it is open;
    afterwards ``stdout`` and ``stderr`` hold what was written (bounded).

    With ``prefix`` the files are ``<prefix>.stdout`` / ``<prefix>.stderr``
    (made afresh for each task, emptied after it), so that the manager can
    read what a task wrote before its worker was killed (:func:`leftover`)."""

    def __init__(self, limit: int | None = None, directory: str | None = None,
                 prefix: str | None = None):
        self.limit = output_limit() if limit is None else int(limit)
        self.directory = directory
        self.prefix = prefix
        self.stdout = ""
        self.stderr = ""
        self._files: dict[int, int] = {}  # fd 1 / fd 2 -> the file it is captured in
        self._saved: dict[int, int] = {}
        self._line_buffered: list[tuple[object, bool | None]] = []

    def __enter__(self) -> OutputCapture:
        flush_all()  # what the worker wrote before stays the worker's
        self._line_buffered = [(s, _line_buffering(s, True)) for s in (sys.stdout, sys.stderr)]
        try:
            for fd, stream in FDS.items():
                self._files[fd] = self._open(stream)
                self._saved[fd] = _dup_or_devnull(fd)
                os.dup2(self._files[fd], fd)
        except BaseException:
            self._restore()
            for f in self._files.values():
                os.close(f)
            self._files.clear()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        flush_all()  # what the task wrote goes to its own files
        self._restore()
        for stream, was in self._line_buffered:
            _line_buffering(stream, was)
        texts = {}
        for fd, stream in FDS.items():
            f = self._files.pop(fd, None)
            if f is None:
                continue
            try:
                texts[stream] = read_bounded(f, self.limit, stream)
            except OSError as e:  # the result still goes back, saying so
                texts[stream] = f"{MARKER_PREFIX}this task's {stream} could not be read: {e}]\n"
            finally:
                if self.prefix:  # emptied: nothing of it is read as another task's
                    os.ftruncate(f, 0)
                os.close(f)
        self.stdout, self.stderr = (texts.get(s, "") for s in STREAMS)

    def _open(self, stream: str) -> int:
        if not self.prefix:
            return _anonymous_file(self.directory)
        # a new file (inode) per task: a process a killed task left behind
        # writes on into its own task's file, never into this one
        path = f"{self.prefix}.{stream}"
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError:  # a directory (or anything else) in the way: capture all the same
            return _anonymous_file(self.directory)
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:  # something took the name meanwhile: capture all the same
            return _anonymous_file(self.directory)

    def _restore(self) -> None:
        for fd, saved in list(self._saved.items()):
            os.dup2(saved, fd)
            os.close(saved)
            del self._saved[fd]


def leftover(prefix: str, limit: int | None = None) -> dict[str, str]:
    """What the task a killed (or dead) worker was running had written, read
    from its capture files ``<prefix>.stdout`` / ``.stderr`` (bounded, as
    :class:`OutputCapture` reads them), which are then removed; "" for a
    stream without a plain file there (a link or a FIFO the function put in
    its place is not followed).  Called by the manager, in the worker's place."""
    limit = output_limit() if limit is None else int(limit)
    out: dict[str, str] = {}
    for stream in STREAMS:
        path = f"{prefix}.{stream}"
        out[stream] = ""
        try:  # the function may have put anything there: only a plain file is read
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    out[stream] = read_bounded(fd, limit, stream)
            finally:
                os.close(fd)
        _unlink(path)
    return out


def discard(prefix: str) -> None:
    """Remove the capture files ``<prefix>.stdout`` / ``.stderr`` unread (the
    output of a cancelled task, which goes with it)."""
    for stream in STREAMS:
        _unlink(f"{prefix}.{stream}")


def _unlink(path: str) -> None:
    """Remove ``path`` if it can be: a directory the function made there is
    left alone (the manager must not fail over it)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _line_buffering(stream: object, on: bool | None) -> bool | None:
    """Set ``stream``'s line buffering (when it is a text file that has it) and
    return what it was: during a task, ``print`` lines keep their order with
    what child processes write."""
    was = getattr(stream, "line_buffering", None)
    reconfigure = getattr(stream, "reconfigure", None)
    if on is not None and was is not None and reconfigure is not None and was != on:
        try:
            reconfigure(line_buffering=on)
        except (OSError, ValueError):
            return None  # closed or detached: leave it
    return was


def _dup_or_devnull(fd: int) -> int:
    """A copy of ``fd`` to restore later; a worker started with ``fd`` closed
    gets /dev/null back."""
    try:
        return os.dup(fd)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)
