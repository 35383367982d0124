"""The interchange's Unix socket, for managers that run on its own host.

Managers of blocks that never leave this host connect over ``ipc://`` in a
0700 directory of the endpoint's user, instead of CurveZMQ over TCP.  Nothing
crosses a host, so DESIGN decision 9 does not ask for encryption, and the
trust is the same as the TCP port's: whoever may open that directory (the
endpoint's user, root) may also read the 0600 manager key file.  CurveZMQ
costs about 100 us of CPU per small message round trip and about 4 ms per
MiB; a Unix socket costs a tenth of that (issue 20, "large payloads").

Which blocks stay on this host is decided conservatively: Parsl's
``LocalProvider`` itself (not a subclass) whose launcher is exactly
``SingleNodeLauncher`` or ``SimpleLauncher``.  Any other launcher (srun,
mpiexec, a subclass that wraps the command to run elsewhere) keeps CurveZMQ.  ``FUNCX_INTERCHANGE_IPC=0``
keeps CurveZMQ for every manager.
"""
from __future__ import annotations

import hashlib
import logging
import os
import stat
import tempfile
from pathlib import Path

from funcx.defaults import setting

log = logging.getLogger("funcx.interchange")

SOCKET_NAME = "interchange"
#: a Unix socket path holds at most 107 bytes on Linux (103 on macOS)
MAX_PATH_BYTES = 100


def stays_on_host(provider: object) -> bool:
    """Whether every manager of ``provider``'s blocks runs on this host."""
    try:
        from parsl.launchers import SimpleLauncher, SingleNodeLauncher
        from parsl.providers import LocalProvider
    except ImportError:  # pragma: no cover - parsl is a dependency
        return False
    if type(provider) is not LocalProvider:  # a subclass may start managers elsewhere
        return False
    return type(getattr(provider, "launcher", None)) in (SingleNodeLauncher, SimpleLauncher)


def for_provider(provider: object, run_dir: Path) -> Path | None:
    """The socket directory for an endpoint whose blocks all stay on this host
    (and ``FUNCX_INTERCHANGE_IPC`` on); None: its managers use CurveZMQ."""
    if not setting("INTERCHANGE_IPC") or not stays_on_host(provider):
        return None
    return socket_dir(run_dir)


def socket_dir(run_dir: Path) -> Path | None:
    """A directory only this user may open, for the socket: ``<run_dir>/ipc``,
    or, when that path is too long for a Unix socket, one under the system's
    temporary directory named after ``run_dir``.  None (the caller keeps
    CurveZMQ) when neither can be made private: a directory of that name
    that is not ours, or that others may open, is never used."""
    for d in (run_dir / "ipc", _short_dir(run_dir)):
        if len(os.fsencode(d / SOCKET_NAME)) > MAX_PATH_BYTES:
            continue
        try:
            d.mkdir(mode=0o700, exist_ok=True)
            st = os.lstat(d)
        except OSError as e:
            log.warning("no Unix socket for local managers in %s (%s)", d, e)
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            log.warning("no Unix socket for local managers in %s: it is not a directory of "
                        "this user; local managers use CurveZMQ", d)
            continue
        if st.st_mode & 0o077:
            log.warning("no Unix socket for local managers in %s: others may open it (mode "
                        "%o); local managers use CurveZMQ", d, st.st_mode & 0o777)
            continue
        return d
    return None


def remove(directory: Path) -> None:
    """Remove the socket and its directory (the interchange closed; ZeroMQ
    leaves the file behind, and binds over a stale one at the next start)."""
    try:
        (directory / SOCKET_NAME).unlink(missing_ok=True)
        directory.rmdir()
    except OSError as e:
        log.debug("leaving %s: %s", directory, e)


def socket_url(directory: Path) -> str:
    """The ``ipc://`` address of the socket in ``directory``."""
    return f"ipc://{directory / SOCKET_NAME}"


def is_local_url(url: str) -> bool:
    """Whether a manager's interchange address is the local Unix socket
    (where the manager uses no CURVE keys)."""
    return url.startswith("ipc://")


def _short_dir(run_dir: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(run_dir.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"funcx-{os.getuid()}-{digest}"
