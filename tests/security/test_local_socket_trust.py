"""Hostile parties against the interchange's Unix socket (endpoint.local_socket).

Managers on the endpoint's own host connect over ``ipc://`` in a 0700
directory, without CURVE.  A real interchange listens on both its CurveZMQ TCP
port and that socket, and a real manager process (two real workers) serves it
over the socket.  The attacks: a manager without keys on the TCP port (binding
the socket must not have turned CURVE off there), another local user opening
the socket, and a directory planted where the socket would go.  Each proves
the attack fails and that the legitimate manager's tasks still complete.
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import psutil
import pytest
import zmq
from tenants import until
from test_interchange_trust import Outputs, Rig, dealer, handshake, register_frames

from endpoint import local_socket
from endpoint.interchange import Interchange
from endpoint.launch import ManagerLaunch

NOBODY = 65534


class LocalRig(Rig):
    """An interchange with its Unix socket, and one manager connected over it
    (its work and its closing as :class:`Rig`'s)."""

    def __init__(self, tmp: Path):
        run = tmp / "ep" / "run"
        run.mkdir(parents=True)
        for d in (tmp / "ep", run):  # whatever the umask: open to others
            os.chmod(d, 0o755)
        self.dir = local_socket.socket_dir(run)
        assert self.dir == run / "ipc"
        self.out = Outputs()
        self.ix = Interchange("127.0.0.1", 0, self.out, heartbeat_period=0.5,
                              heartbeat_threshold=3.0, max_retries=1, poll_period=0.05,
                              key_dir=run / "curve", local_dir=self.dir)
        assert self.ix.local_url == f"ipc://{run / 'ipc' / 'interchange'}"
        self.thread = threading.Thread(target=self.ix.run, name="interchange", daemon=True)
        self.thread.start()
        self.feed = self.ix.feeder()
        launch = ManagerLaunch(addr=self.ix.local_url, workers=2,
                               curve_keys=str(self.ix.keys.manager_file), block_id="1",
                               manager_id="legit-mgr", heartbeat_period=0.5,
                               heartbeat_threshold=3.0, prefetch=2)
        self.log = open(tmp / "manager.log", "wb")
        self.proc = subprocess.Popen(launch.command(), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        until(lambda: b"legit-mgr" in self.ix.managers, what="the local manager")


@pytest.fixture(scope="module")
def rig():
    # not under pytest's 0700 tmp root: every directory above the socket's own
    # may be traversed by others, so only its 0700 directory keeps them out
    base = Path(tempfile.mkdtemp(prefix="fx-ls-"))
    os.chmod(base, 0o711)
    r = LocalRig(base)
    yield r
    r.close()
    shutil.rmtree(base, ignore_errors=True)


def test_the_local_manager_uses_the_socket_and_no_tcp(rig):
    rig.legit_work(6)
    tcp = [c for c in psutil.Process(rig.proc.pid).net_connections(kind="tcp")
           if c.raddr and c.raddr.port == rig.ix.port]
    assert tcp == [], "the local manager holds a TCP connection to the interchange"
    mode = os.stat(rig.dir).st_mode & 0o777
    assert mode == 0o700, oct(mode)


@pytest.mark.parametrize("keys", ["none", "random"])
def test_the_tcp_port_still_demands_curve_beside_the_socket(rig, keys):
    pub, sec = zmq.curve_keypair()
    from endpoint.curve import ManagerKeys

    rogue_keys = None if keys == "none" else ManagerKeys(rig.ix.keys.server_public, pub, sec)
    rogue, mon = dealer(rig.ix, b"rogue-tcp", rogue_keys)  # ix.url: the TCP port
    try:
        assert handshake(mon) != zmq.EVENT_HANDSHAKE_SUCCEEDED
        try:
            rogue.send_multipart(register_frames("rogue-tcp", capacity=50), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        rig.legit_work(4)
        assert b"rogue-tcp" not in rig.ix.managers
        assert rogue.poll(200) == 0
    finally:
        rogue.close(0)
        mon.close(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
def test_another_local_user_cannot_open_the_socket(rig):
    path = rig.ix.local_url[len("ipc://"):]
    assert os.path.exists(path)
    # the directories above are open to it (a missing name there: ENOENT) ...
    assert _connect_as(NOBODY, str(Path(path).parent.parent / "nothing")) == errno.ENOENT
    # ... the socket's own 0700 directory is not
    assert _connect_as(NOBODY, path) == errno.EACCES
    assert _connect_as(os.getuid(), path) == 0  # positive control: the owner may
    rig.legit_work(4)  # the owner's manager is untouched


def _connect_as(uid: int, path: str) -> int:
    """connect() to the Unix socket ``path`` from a child running as ``uid``:
    0, or the errno it failed with (a fork: nobody may exec this venv's python)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only makes system calls, then leaves at once
        code = 255
        try:
            if uid != os.getuid():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(path)
                code = 0
            except OSError as e:
                code = e.errno or 255
            os.write(w, bytes([code]))
        finally:
            os._exit(0)
    os.close(w)
    try:
        got = os.read(r, 1)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert got, "the probe wrote nothing"
    return got[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to plant a directory as another user")
def test_a_directory_planted_by_another_user_is_not_used(tmp_path, caplog):
    run = tmp_path / ("r" * 120)  # too long for a socket path: the temporary fallback
    run.mkdir()
    planted = local_socket._short_dir(run)
    planted.mkdir(mode=0o700)
    try:
        os.chown(planted, NOBODY, NOBODY)
        assert local_socket.socket_dir(run) is None
        assert "not a directory of this user" in caplog.text
    finally:
        planted.rmdir()


def test_a_planted_symlink_or_an_open_directory_is_not_used(tmp_path, caplog):
    run = tmp_path / ("s" * 120)
    run.mkdir()
    short = local_socket._short_dir(run)
    target = Path(tempfile.mkdtemp())
    try:
        short.symlink_to(target)  # an attacker's link to a directory it controls
        assert local_socket.socket_dir(run) is None
        short.unlink()
        short.mkdir(mode=0o700)
        os.chmod(short, 0o755)
        assert local_socket.socket_dir(run) is None
        assert "others may open it" in caplog.text
    finally:
        if short.is_symlink():
            short.unlink()
        elif short.exists():
            short.rmdir()
        target.rmdir()
