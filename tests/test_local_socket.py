"""Managers on the endpoint's own host connect over a Unix socket
(endpoint.local_socket): which blocks do, where the socket lives, and that a
real endpoint's manager uses it.  The attacks on it are in
tests/security/test_local_socket_trust.py."""
from __future__ import annotations

import os

import psutil
import pytest
import zmq
from parsl.launchers import MpiExecLauncher, SimpleLauncher, SingleNodeLauncher, SrunLauncher
from parsl.providers import LocalProvider, SlurmProvider

from endpoint import local_socket
from endpoint.interchange import Interchange


class Elsewhere(SimpleLauncher):
    """A launcher that may wrap the command to run on another node."""


class Remote(LocalProvider):
    """A provider that may start its jobs on another node."""


@pytest.mark.parametrize("provider, local", [
    (LocalProvider(), True),  # Parsl's default: SingleNodeLauncher
    (LocalProvider(launcher=SingleNodeLauncher()), True),
    (LocalProvider(launcher=SimpleLauncher()), True),
    (LocalProvider(launcher=SrunLauncher()), False),
    (LocalProvider(launcher=MpiExecLauncher()), False),
    (LocalProvider(launcher=Elsewhere()), False),  # a subclass is not trusted to stay
    (Remote(), False),  # nor is a subclass of the provider
    (SlurmProvider(), False),
    (None, False),
])
def test_only_blocks_that_stay_on_this_host_use_the_socket(provider, local):
    assert local_socket.stays_on_host(provider) is local


def test_the_setting_turns_the_socket_off(tmp_path, monkeypatch):
    assert local_socket.for_provider(LocalProvider(), tmp_path) == tmp_path / "ipc"
    monkeypatch.setenv("FUNCX_INTERCHANGE_IPC", "0")
    assert local_socket.for_provider(LocalProvider(), tmp_path) is None


def _interchange(run, local_dir):
    return Interchange("127.0.0.1", 0, lambda batch: None, heartbeat_period=0.5,
                       heartbeat_threshold=3.0, max_retries=1, poll_period=0.05,
                       key_dir=run / "curve", local_dir=local_dir)


@pytest.mark.parametrize("long_path", [False, True])
def test_the_socket_answers_and_is_removed_when_the_interchange_closes(tmp_path, long_path):
    run = tmp_path / ("x" * 120 if long_path else "run")
    run.mkdir()
    d = local_socket.socket_dir(run)
    assert d is not None
    # a run dir too deep for a socket path falls back to a private temporary one
    assert (d == run / "ipc") is not long_path
    assert len(os.fsencode(d / local_socket.SOCKET_NAME)) <= local_socket.MAX_PATH_BYTES
    assert os.stat(d).st_mode & 0o777 == 0o700
    ix = _interchange(run, d)
    try:
        assert ix.local_url == local_socket.socket_url(d)
        s = zmq.Context.instance().socket(zmq.DEALER)
        s.connect(ix.local_url)
        s.send(b"hello")  # a NULL-mechanism peer gets through on the socket
        assert ix.router.poll(10_000), "nothing arrived on the Unix socket"
        assert ix.router.recv_multipart()[-1] == b"hello"
        s.close(0)
    finally:
        ix.close()
    assert not d.exists()


def test_a_socket_that_cannot_be_bound_leaves_curve_for_everyone(tmp_path, caplog):
    run = tmp_path / "run"
    run.mkdir()
    d = local_socket.socket_dir(run)
    assert d is not None
    (d / local_socket.SOCKET_NAME).mkdir()  # a directory where the socket would be
    ix = _interchange(run, d)
    try:
        assert ix.local_url is None
        assert "local managers use CurveZMQ: cannot listen on" in caplog.text
        assert ix.router.curve_server  # the TCP port (and anything bound later) is CURVE
    finally:
        ix.close()
    assert d.exists()  # not ours to remove: something else is in it


def double(x):
    return 2 * x


def test_a_real_endpoint_s_manager_connects_over_the_socket(endpoint, fxc):
    from endpoint.paths import EndpointDir

    tid = fxc.run(21, endpoint_id=endpoint, function_id=fxc.register_function(double))
    fxc.wait([tid], timeout=60)
    assert fxc.get_result(tid) == 42
    run = EndpointDir("pytest-ep").run_dir  # the session endpoint (tests/conftest.py)
    url = local_socket.socket_url(run / "ipc")
    managers = [p for p in psutil.process_iter(["cmdline"])
                if "endpoint.manager" in " ".join(p.info["cmdline"] or [])
                and str(run) in " ".join(p.info["cmdline"] or [])]
    assert managers, "no manager of the test endpoint"
    for m in managers:
        cmd = m.info["cmdline"]
        assert cmd[cmd.index("--addr") + 1] == url
        assert not [c for c in m.net_connections(kind="tcp") if c.status == "ESTABLISHED"]
