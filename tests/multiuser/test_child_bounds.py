"""What bounds a multi-user endpoint's children, without the live service
(review 19: H3 result sizes and message rate, L1 environment, M3 a child that
never registers, L5 a start that fails after the fork)."""
from __future__ import annotations

import json
import os
import pwd
import sys
import uuid
from pathlib import Path

import pytest

from endpoint.multiuser import configure, site_config
from endpoint.multiuser.audit import read
from endpoint.multiuser.children import Child, child_environment, result_limit
from endpoint.multiuser.mapper import Account
from endpoint.multiuser.router import Router
from funcx.errors import MaxResultSizeExceeded, UserEndpointStartFailed
from funcx.protocol import error_codes
from funcx.protocol.messages import Result, Task
from funcx.serialize import FuncXSerializer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from faultlib import wait_until  # noqa: E402


def _id() -> str:
    return str(uuid.uuid4())


def _me() -> Account:
    pw = pwd.getpwuid(os.getuid())
    return Account(pw.pw_name, pw.pw_uid, pw.pw_gid, (), pw.pw_dir, pw.pw_shell)


def test_child_environment_is_an_allowlist():
    parent = {"FUNCX_MAX_RESULT_BYTES": "123", "FUNCX_TASK_OUTPUT_MAX": "9",
              "FUNCX_FAKE_SESSION": "s3cret-value", "FUNCX_TLS_CERT": "/etc/x.pem",
              "FUNCX_TLS_CA": "/etc/ca.pem", "FUNCX_CA_BUNDLE": "/etc/b.pem",
              "FUNCX_INSECURE": "1", "FUNCX_SERVICE_ADDRESS": "https://x",
              "FUNCX_REDIS_URL": "redis://:pw@h", "PYTHONPATH": "/root/lib", "LANG": "C"}
    env = child_environment(_me(), parent)
    funcx = {k: v for k, v in env.items() if k.startswith("FUNCX_")}
    assert funcx == {"FUNCX_MAX_RESULT_BYTES": "123", "FUNCX_TASK_OUTPUT_MAX": "9"}
    assert "PYTHONPATH" not in env and "s3cret-value" not in json.dumps(env)


def _child(tmp_path: Path, out: list) -> Child:
    return Child(_me(), {"username": "alice"}, "f" * 8, {}, _id(), tmp_path / "run",
                 tmp_path / "logs", out.extend, 0.5, 3.0, 0)


def test_an_oversized_result_from_a_childs_manager_fails_its_task(tmp_path):
    """The worker's size check runs as the user, who controls it: the parent
    checks again and refuses what passes the limit."""
    import zmq

    out: list = []
    child = _child(tmp_path, out)
    try:
        limit = result_limit()
        assert child.interchange.router.getsockopt(zmq.MAXMSGSIZE) > limit
        big, small = Task(_id(), _id(), "p"), Task(_id(), _id(), "p")
        child.pending.update({big.task_id: big, small.task_id: small})
        child._output([Result(big.task_id, "success", data="x" * (limit + 1)),
                       Result(small.task_id, "success", data="ok")])
    finally:
        child.stop()
    got = {r.task_id: r for r in out}
    assert got[small.task_id].status == "success" and got[small.task_id].data == "ok"
    refused = got[big.task_id]
    assert refused.status == "failed" and refused.details["reason"] == "result too large"
    assert isinstance(FuncXSerializer().deserialize(refused.exc_data), MaxResultSizeExceeded)
    assert len(refused.data) < 10_000 and child.oversized == 1 and child.in_flight() == 0


def test_a_childs_interchange_reads_at_most_its_message_rate(tmp_path):
    out: list = []
    child = _child(tmp_path, out)
    try:
        ix = child.interchange
        ix._rate, ix._tokens = 5.0, 5.0
        import time

        start, allowed = time.monotonic(), 0
        while time.monotonic() - start < 0.6:
            allowed += ix._may_read()
        spent = time.monotonic() - start
    finally:
        child.stop()
    # the burst (5) and what refills while it waits; unthrottled it would be thousands
    assert 5 <= allowed <= 5 + 5 * spent + 1 and ix.stats["throttled"] >= 1


def _router(tmp_path: Path, out: list, python: str) -> Router:
    configure.write(tmp_path / "ep", "site", tmp_path)
    cfg = site_config.load(tmp_path / "ep")
    cfg.child_python = python
    router = Router(cfg, out.extend, tmp_path / "run", tmp_path / "logs", 0.5, 3.0, 0)
    router.mapper.map = lambda identity: _me()  # type: ignore[method-assign]
    return router


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a child as an account needs root")
def test_a_child_that_never_registers_fails_its_tasks_and_ends(tmp_path):
    """A child that dies right after exec (here /bin/true as its Python) is
    restarted START_ATTEMPTS times, then its tasks fail with
    USER_ENDPOINT_START_FAILED and it is ended, not restarted forever."""
    out: list = []
    router = _router(tmp_path, out, "/bin/true")
    router.start_attempts = 1
    ts = [Task(_id(), _id(), "p", identity={"id": "1", "username": "alice"}) for _ in range(2)]
    try:
        router.submit(ts)
        assert len(router.children) == 1 and not out

        def ended():
            import time

            router.tend(time.monotonic())
            return len(out) == 2 and not router.children
        assert wait_until(ended, 15, 0.1), f"results {out}, children {router.children}"
    finally:
        router.close()
    assert {r.task_id for r in out} == {t.task_id for t in ts}
    for r in out:
        assert r.status == "failed"
        assert r.details["error_code"] == error_codes.USER_ENDPOINT_START_FAILED
        exc = FuncXSerializer().deserialize(r.exc_data)
        assert isinstance(exc, UserEndpointStartFailed) and "registered" in str(exc)
    stops = [a for a in read(router.cfg.directory / "audit.log")
             if a["event"] == "child_stopped"]
    assert [a["reason"] for a in stops] == ["never registered"]


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a child as an account needs root")
def test_a_start_failing_after_the_fork_fails_its_task_alone(tmp_path, monkeypatch):
    """A SubprocessError (e.g. from the preexec step) is a failed start too."""
    import subprocess

    from endpoint.multiuser import children

    def broken(*a, **kw):
        raise subprocess.SubprocessError("Exception occurred in preexec_fn.")
    monkeypatch.setattr(children.subprocess, "Popen", broken)
    out: list = []
    router = _router(tmp_path, out, sys.executable)
    t = Task(_id(), _id(), "p", identity={"id": "1", "username": "alice"})
    try:
        router.submit([t])
        assert not router.children
        # the half-started child's interchange was stopped, not leaked
        import threading

        assert wait_until(lambda: not [th for th in threading.enumerate()
                                       if th.name.startswith("interchange-")], 10, 0.05)
    finally:
        router.close()
    assert [r.details["error_code"] for r in out] == [error_codes.USER_ENDPOINT_START_FAILED]
    assert "could not start: SubprocessError" in out[0].data


def test_a_slow_mapping_program_does_not_hold_the_routers_lock(tmp_path):
    """Mapping (here a program that waits for the test), rendering and starting
    run outside the lock that tend, cancel and status take (review 19 M4)."""
    import threading

    started, release = tmp_path / "started", tmp_path / "release"
    prog = tmp_path / "map.py"
    prog.write_text(
        "import json, os, sys, time\n"
        f"open({str(started)!r}, 'w').close()\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.02)\n"
        "print(json.dumps({'DATA_TYPE': 'identity_mapping_output#1.0.0', 'result': []}))\n")
    configure.write(tmp_path / "ep", "site", tmp_path)
    (tmp_path / "ep" / site_config.MAPPING_FILE).write_text(json.dumps({
        "DATA_TYPE": "external_identity_mapping#1.0.0", "command": [sys.executable, str(prog)]}))
    out: list = []
    router = Router(site_config.load(tmp_path / "ep"), out.extend, tmp_path / "run",
                    tmp_path / "logs", 0.5, 3.0, 0)
    t = Task(_id(), _id(), "p", identity={"id": "1", "username": "alice"})
    placing = threading.Thread(target=router.submit, args=([t],))
    placing.start()
    try:
        assert wait_until(started.exists, 10, 0.02), "the mapping program did not start"
        got = router.lock.acquire(timeout=1)
        if got:
            router.lock.release()
        import time

        router.tend(time.monotonic())  # the loop carries on meanwhile
        router.cancel(["x"])
    finally:
        release.touch()
        placing.join(15)
        router.close()
    assert got, "the router's lock was held while the mapping program ran"
    assert [r.details["error_code"] for r in out] == [error_codes.IDENTITY_UNMAPPED]


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a child as an account needs root")
def test_children_start_from_one_long_lived_thread(tmp_path, monkeypatch):
    """PR_SET_PDEATHSIG follows the thread that forked: every child is started
    from the router's starter thread, not from whichever thread submitted
    (here one that ends at once) (review 19 L2)."""
    import threading

    from endpoint.multiuser import children

    threads: list[str] = []
    real = children.Child.start_process

    def start(self):
        threads.append(threading.current_thread().name)
        real(self)
    monkeypatch.setattr(children.Child, "start_process", start)
    out: list = []
    router = _router(tmp_path, out, "/bin/true")
    try:
        for n in range(2):
            t = Task(_id(), _id(), "p", identity={"id": "1", "username": "alice"},
                     user_endpoint_config={"workers": n + 1})
            th = threading.Thread(target=router.submit, args=([t],), name=f"reader-{n}")
            th.start()
            th.join(15)
    finally:
        router.close()
    assert len(threads) == 2 and len(set(threads)) == 1
    assert threads[0].startswith("child-starter"), threads


@pytest.mark.skipif(os.geteuid() != 0 or not __import__("shutil").which("unshare"),
                    reason="a PID namespace (unshare) needs root")
def test_a_child_whose_parent_is_pid_1_runs(tmp_path):
    """In a container the parent may be PID 1: the child compares its parent
    with the pid handed to it, never with 1 (review 19 L3).  Here the parent is
    PID 1 of a new PID namespace; the child gets past the check to its manager
    (whose arguments are left empty, so it stops there)."""
    import subprocess

    handoff = json.dumps({"endpoint_id": "e", "child": "c", "parent_pid": 1,
                          "manager_keys": "k", "argv": []})
    parent = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-m', "
              f"'endpoint.multiuser.child'], stdin=subprocess.PIPE); "
              f"p.communicate({handoff!r}.encode()); sys.exit(p.returncode)")
    env = {**os.environ, "HOME": str(tmp_path)}
    r = subprocess.run(["unshare", "--fork", "--pid", "--mount-proc", sys.executable, "-c",
                        parent], capture_output=True, text=True, timeout=60, env=env,
                       cwd=str(Path(__file__).resolve().parents[2]))
    assert "child c as uid" in r.stderr, r.stderr
    assert "parent endpoint is gone" not in r.stderr
    assert (tmp_path / ".funcx" / "multi-user" / "e" / "c" / "manager.key_secret").read_text() \
        == "k"


def test_a_huge_exception_is_a_bounded_failure(monkeypatch):
    """An honest task raising an exception with a huge message sends a failure
    within FUNCX_MAX_RESULT_BYTES (traceback cut, exception object left out), so
    a multi-user child's size limit never cuts off its honest manager."""
    from endpoint.execute import failure

    monkeypatch.setenv("FUNCX_MAX_RESULT_BYTES", "10000")
    r = failure(Task(_id(), _id(), "p"), ValueError("x" * 50_000))
    assert r.status == "failed" and r.exc_data == ""
    assert len(r.data) < 10_000 + 300 and "ValueError" in r.data and "cut here" in r.data
    small = failure(Task(_id(), _id(), "p"), ValueError("small"))
    assert isinstance(FuncXSerializer().deserialize(small.exc_data), ValueError)
