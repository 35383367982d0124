"""Multi-user endpoint, for real (issue 19): a real service, a real parent
endpoint running as root, two local Unix accounts made for the test (removed
after, also on failure) and two service users mapped to them, a third service
user mapped to none.  Needs root: skipped with the reason outside CI, a
failure under CI=true (`make test-multiuser`, a bounded CI step)."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.multiuser, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "faults"))
from faultlib import wait_until  # noqa: E402

EP = "pytest-mep"
IDLE_S = 4
#: the parent's max_inflight, and max_tasks_per_user (review 19 H2)
WINDOW, USER_TASKS = 8, 3


def _need_root() -> None:
    why = None
    if os.geteuid() != 0:
        why = "multi-user endpoints need root (to create accounts and start children as them)"
    elif not shutil.which("useradd"):
        why = "useradd is not installed"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="module")
def accounts():
    """Two local accounts, unique to this run; removed (with their homes) after."""
    _need_root()
    tag = uuid.uuid4().hex[:6]
    names = [f"fxa{tag}", f"fxb{tag}"]
    made = []
    try:
        for n in names:
            subprocess.run(["useradd", "-m", "-s", "/bin/sh", n], check=True,
                           capture_output=True)
            made.append(n)
        # a private file of the second account
        b = pwd.getpwnam(names[1])
        secret = Path(b.pw_dir) / "secret.txt"
        secret.write_text("bob's secret")
        os.chown(secret, b.pw_uid, b.pw_gid)
        secret.chmod(0o600)
        yield names
    finally:
        for n in made:
            subprocess.run(["pkill", "-KILL", "-u", n], capture_output=True)
            subprocess.run(["userdel", "-r", n], capture_output=True)


@pytest.fixture(scope="module")
def child_python():
    """A Python every account can run, with funcX importable: what a site installs
    (here: a venv of the system's python3.11 that adds this checkout's venv, whose
    own interpreter lives under /root, mode 0700).  Made under /tmp directly, not
    under pytest's base temp dir: a concurrent pytest session resets that to 0700
    and prunes old runs."""
    here = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" \
        / "site-packages"
    system = shutil.which(f"python{sys.version_info[0]}.{sys.version_info[1]}",
                          path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip("no system python of this version for the accounts to run")
    root = Path(tempfile.mkdtemp(prefix="funcx-childpy-"))
    try:
        root.chmod(0o755)
        venv = root / "py"
        subprocess.run([system, "-m", "venv", "--without-pip", str(venv)], check=True)
        sp = next((venv / "lib").glob("python3*/site-packages"))
        (sp / "funcx_site.pth").write_text(f"import site; site.addsitedir({str(here)!r})\n")
        subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
        yield str(venv / "bin" / "python")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def mep(service, funcx_home, redis_client, accounts, child_python, token):
    """The parent endpoint (idle timeout IDLE_S) and a client per service user."""
    from backend.store import users
    from endpoint import daemon
    from endpoint.multiuser import configure
    from endpoint.paths import EndpointDir
    from funcx import FuncXClient

    # the endpoint's owner is a multi-user administrator: the service runs its
    # published rules and schema at submit (others' it leaves to the endpoint)
    owner = users.authenticate(redis_client, token)
    assert owner is not None
    users.set_multi_user_admin(redis_client, owner.user_id)
    ep = EndpointDir(EP)
    if ep.path.exists():
        shutil.rmtree(ep.path)
    configure.write(ep.path, EP, funcx_home)
    a, b = accounts
    (ep.path / "identity_mapping.json").write_text(json.dumps([{
        "DATA_TYPE": "expression_identity_mapping#1.0.0",
        "mappings": [{"source": "{username}", "match": f"({a}|{b})", "output": "{0}"}]}]))
    site = (ep.path / "multi_user.yaml").read_text()
    (ep.path / "multi_user.yaml").write_text(
        site.replace("idle_timeout_s: 300", f"idle_timeout_s: {IDLE_S}")
        .replace("max_children_per_user: 2", "max_children_per_user: 4")
        .replace("max_tasks_per_user: 1000", f"max_tasks_per_user: {USER_TASKS}")
        + f"child_python: {child_python}\n")
    # the parent's window of tasks is small, so one user's backlog could fill it
    cfg = (ep.path / "config.py").read_text()
    assert "scaling_enabled=False," in cfg
    (ep.path / "config.py").write_text(cfg.replace(
        "scaling_enabled=False,", f"scaling_enabled=False, max_inflight={WINDOW},"))
    clients = {}
    for name in (a, b, f"mallory{uuid.uuid4().hex[:6]}"):
        uid = users.create_user(redis_client, name)
        clients[name] = FuncXClient(service, access_token=users.issue_token(redis_client, uid))
        clients[name].throttling_enabled = False  # the tests poll for results
    # what the parent has and no child may get (children's environment is an allowlist)
    hidden = {"FUNCX_PROBE_SESSION_SECRET": "s3cret-value", "FUNCX_TLS_KEY": "/fake/key.pem"}
    saved = {k: os.environ.get(k) for k in hidden}
    os.environ.update(hidden)
    try:
        eid = daemon.start(EP)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield {"eid": eid, "ep": ep, "clients": clients, "accounts": accounts,
               "mallory": [n for n in clients if n.startswith("mallory")][0]}
    finally:
        daemon.stop(EP)
        # shown with a failure: the parent's and the children's logs
        for log in [ep.log_file, *sorted((ep.path / "children").glob("*.log"))]:
            if log.exists():
                print(f"==== {log}\n" + "".join(log.read_text(errors="replace")
                                                .splitlines(True)[-60:]))


def probe(paths):
    """Who runs this task, and what it can read."""
    import os
    import pwd

    out = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
           "user": pwd.getpwuid(os.getuid()).pw_name, "home": os.environ.get("HOME"),
           "cwd_home": os.path.expanduser("~"), "cwd": os.getcwd(), "reads": {},
           "env": sorted(k for k in os.environ if k.startswith("FUNCX_"))}
    for p in paths:
        try:
            with open(p) as f:
                f.read()
            out["reads"][p] = "read"
        except OSError as e:
            out["reads"][p] = type(e).__name__
    return out


def _result(client, tid, timeout=30.0):
    from funcx.errors import TaskPending

    def done():
        try:
            return ("ok", client.get_result(tid))
        except TaskPending:
            return None
        except Exception as e:  # noqa: BLE001 - the task's failure is the answer
            return ("failed", e)

    got = wait_until(done, timeout, 0.2)
    assert got, f"task {tid} did not finish within {timeout}s"
    return got


def _children(ep) -> list[dict]:
    try:
        return json.loads((ep.path / "run" / "children.json").read_text())
    except (OSError, ValueError):
        return []


def _run_probe(mep, who, paths, **kw):
    c = mep["clients"][who]
    fid = c.register_function(probe)
    return c.run(paths, endpoint_id=mep["eid"], function_id=fid, **kw)


def test_each_identity_runs_as_its_own_account(mep, funcx_home):
    a, b = mep["accounts"]
    pa, pb = pwd.getpwnam(a), pwd.getpwnam(b)
    secret = f"{pb.pw_dir}/secret.txt"
    parent_creds = [str(funcx_home / "credentials" / "token.json"),
                    str(mep["ep"].path / "endpoint.json")]
    ta = _run_probe(mep, a, [secret, *parent_creds])
    tb = _run_probe(mep, b, [secret])
    status, ra = _result(mep["clients"][a], ta)
    assert status == "ok", ra
    status, rb = _result(mep["clients"][b], tb)
    assert status == "ok", rb
    assert (ra["uid"], ra["euid"], ra["gid"], ra["user"]) == (pa.pw_uid, pa.pw_uid, pa.pw_gid, a)
    assert ra["home"] == ra["cwd_home"] == pa.pw_dir
    assert "FUNCX_PROBE_SESSION_SECRET" not in ra["env"] and "FUNCX_TLS_KEY" not in ra["env"]
    assert (rb["uid"], rb["user"], rb["home"]) == (pb.pw_uid, b, pb.pw_dir)
    # alice cannot read bob's file nor the parent's credentials; bob reads his own
    assert ra["reads"] == {p: "PermissionError" for p in [secret, *parent_creds]}
    assert rb["reads"] == {secret: "read"}
    kids = {c["account"]: c for c in _children(mep["ep"])}
    # and alice's task cannot reach bob's child's manager key (which exists) either
    bob_key = (Path(pb.pw_dir) / ".funcx" / "multi-user" / mep["eid"] / kids[b]["name"]
               / "manager.key_secret")
    assert bob_key.is_file()
    tk = _run_probe(mep, a, [str(bob_key)])
    status, rk = _result(mep["clients"][a], tk)
    assert status == "ok" and rk["reads"] == {str(bob_key): "PermissionError"}
    assert set(kids) == {a, b}
    for acct, c in kids.items():  # each child process runs as its account
        assert psutil.Process(c["pid"]).uids().real == pwd.getpwnam(acct).pw_uid
        # started in / (a root-squashed home may be closed to root), entered the
        # home as the account
        assert psutil.Process(c["pid"]).cwd() == pwd.getpwnam(acct).pw_dir


def test_unmapped_identity_refused_at_submit(mep, service):
    from funcx.errors import FuncxAPIError
    from funcx.protocol import error_codes

    with pytest.raises(FuncxAPIError) as e:
        _run_probe(mep, mep["mallory"], [])
    assert e.value.code == error_codes.IDENTITY_UNMAPPED
    assert "not mapped" in str(e.value)
    from backend.supervisor import logs_dir

    def logged():
        return any(mep["mallory"] in p.read_text(errors="replace") and "refused" in
                   p.read_text(errors="replace") for p in logs_dir().glob("web*.log"))
    assert wait_until(logged, 10), "the service did not log the refusal"


def test_status_shows_others_counts_only(mep):
    """A non-owner's GET /v2/endpoints/<id>/status of the public parent: counts of
    children, never an account, uid, identity, pid or log path (review M1)."""
    a, b = mep["accounts"]
    tid = _run_probe(mep, a, [])
    assert _result(mep["clients"][a], tid)[0] == "ok"
    kids = _children(mep["ep"])
    assert kids, "the router wrote no children.json"
    who = mep["clients"][mep["mallory"]]  # owns nothing, mapped to nothing

    def published():
        st = who.get_endpoint_status(mep["eid"])
        return st if st["details"].get("children", 0) >= 1 else None
    st = wait_until(published, 15, 0.2)
    assert st, "the heartbeat never counted the children"
    d = st["details"]
    assert d["multi_user"] is True and isinstance(d["children"], int)
    assert d["manager_details"] == []
    text = json.dumps(st)
    for c in kids:
        for secret in (c["account"], c["identity"], c["name"], c["log"]):
            assert str(secret) not in text, f"status shows {secret!r}"
        assert f'"pid": {c["pid"]}' not in text and f'"uid": {c["uid"]}' not in text
    assert '"uid"' not in text and '"account"' not in text and '"identity"' not in text
    # the detail stays on the host: funcx-endpoint status reads children.json
    from typer.testing import CliRunner

    from endpoint.cli import app

    res = CliRunner().invoke(app, ["status", EP])
    assert res.exit_code == 0, res.output
    assert f"account {a}" in res.output


def test_template_value_outside_schema_refused(mep):
    from funcx.errors import FuncxAPIError
    from funcx.protocol import error_codes

    a, _ = mep["accounts"]
    with pytest.raises(FuncxAPIError) as e:
        _run_probe(mep, a, [], user_endpoint_config={"workers": 1000})
    assert e.value.code == error_codes.USER_ENDPOINT_CONFIG_INVALID
    assert "workers" in str(e.value) and "maximum" in str(e.value)
    with pytest.raises(FuncxAPIError) as e:
        _run_probe(mep, a, [], user_endpoint_config={"worker_init": "curl x | sh"})
    assert e.value.code == error_codes.USER_ENDPOINT_CONFIG_INVALID
    # a value inside the schema gets a child of its own, rendered with it
    tid = _run_probe(mep, a, [], user_endpoint_config={"workers": 3})
    status, r = _result(mep["clients"][a], tid)
    assert status == "ok" and r["user"] == a
    assert any(c["account"] == a and c["options"].get("workers") == 3
               for c in _children(mep["ep"]))
    # the executor sends it too (Globus Compute's Executor.user_endpoint_config)
    from funcx import FuncXExecutor

    with FuncXExecutor(endpoint_id=mep["eid"], client=mep["clients"][a],
                       user_endpoint_config={"workers": 4}) as ex:
        assert ex.submit(probe, []).result(timeout=60)["user"] == a
        bad = FuncXExecutor(endpoint_id=mep["eid"], client=mep["clients"][a],
                            user_endpoint_config={"workers": 0})
        with pytest.raises(FuncxAPIError) as e:
            bad.submit(probe, []).result(timeout=60)
        bad.shutdown(wait=False)
    assert e.value.code == error_codes.USER_ENDPOINT_CONFIG_INVALID
    assert any(c["account"] == a and c["options"].get("workers") == 4
               for c in _children(mep["ep"]))


def test_child_idles_out_and_comes_back(mep):
    a, _ = mep["accounts"]
    status, _ = _result(mep["clients"][a], _run_probe(mep, a, []))
    assert status == "ok"
    before = [c["pid"] for c in _children(mep["ep"]) if c["account"] == a]
    assert before, "alice's task ran, yet she has no child"
    gone = wait_until(lambda: not any(c["account"] == a for c in _children(mep["ep"])),
                      IDLE_S + 20, 0.25)
    assert gone, "alice's children did not idle out"
    assert wait_until(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status()
                                      != psutil.STATUS_ZOMBIE for p in before), 10)
    tid = _run_probe(mep, a, [])
    status, r = _result(mep["clients"][a], tid)
    assert status == "ok" and r["user"] == a
    after = [c["pid"] for c in _children(mep["ep"]) if c["account"] == a]
    assert after and not set(after) & set(before)


def test_audit_log_and_status_show_who_ran_what(mep):
    from endpoint.daemon import endpoint_info
    from endpoint.multiuser.audit import read

    a, b = mep["accounts"]
    recs = read(mep["ep"].path / "audit.log")
    ran = [r for r in recs if r["event"] == "dispatched"]
    assert {r["account"] for r in ran} == {a, b}
    for r in ran:
        assert r["identity"] == r["account"] and r["uid"] == pwd.getpwnam(r["account"]).pw_uid
        assert r["task_id"] and r["t"] > 0 and r["child_pid"]
    assert any(r["event"] == "child_stopped" and r["reason"] == "idle" for r in recs)
    assert oct((mep["ep"].path / "audit.log").stat().st_mode & 0o777) == "0o600"
    info = endpoint_info(EP)
    assert info["multi_user"] is True and info["children"]
    out = subprocess.run([sys.executable, "-m", "endpoint.cli", "status", EP], text=True,
                         capture_output=True, env={**os.environ}, timeout=60)
    assert f"account {a}" in out.stdout, out.stdout + out.stderr


def slow_probe(seconds):
    import os
    import time

    time.sleep(seconds)
    return os.getuid()


def test_a_child_that_dies_with_work_is_restarted_and_the_task_runs(mep):
    a, _ = mep["accounts"]
    c = mep["clients"][a]
    status, _ = _result(c, _run_probe(mep, a, []))  # alice's child is up
    assert status == "ok"
    tid = c.run(5, endpoint_id=mep["eid"], function_id=c.register_function(slow_probe))
    mine = [k for k in _children(mep["ep"]) if k["account"] == a and not k["options"].get(
        "workers") == 3]
    assert mine
    pid = mine[0]["pid"]
    # the state file (rewritten each second) shows the task held by this child
    assert wait_until(lambda: any(k["pid"] == pid and k["outstanding"] for k in
                                  _children(mep["ep"])), 20, 0.1)
    assert c.get_task(tid)["status"] == "running" or wait_until(
        lambda: c.get_task(tid)["status"] == "running", 10, 0.1)
    os.killpg(pid, signal.SIGKILL)  # the child and its workers, mid-task
    status, value = _result(c, tid, timeout=60)
    assert status == "ok" and value == pwd.getpwnam(a).pw_uid
    now = [k for k in _children(mep["ep"]) if k["name"] == mine[0]["name"]]
    assert now and now[0]["pid"] != pid and now[0]["restarts"] >= 1


def _gone(procs) -> bool:
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True


def test_stop_ends_the_children_and_start_brings_the_endpoint_back(mep):
    from endpoint import daemon

    a, b = mep["accounts"]
    for who in (a, b):
        status, _ = _result(mep["clients"][who], _run_probe(mep, who, []))
        assert status == "ok"
    procs = [psutil.Process(k["pid"]) for k in _children(mep["ep"])]
    procs += [w for p in list(procs) for w in p.children(recursive=True)]
    assert len(procs) >= 4  # two children and their workers
    assert daemon.stop(EP)
    assert wait_until(lambda: _gone(procs), 20, 0.2), "children outlived `stop`"
    from endpoint.multiuser.audit import read

    audit = [r for r in read(mep["ep"].path / "audit.log") if r["event"] == "child_stopped"]
    assert any(r["reason"] == "endpoint stopped" for r in audit)
    assert daemon.start(EP) == mep["eid"]  # the same endpoint, registered again
    status, r = _result(mep["clients"][a], _run_probe(mep, a, []))
    assert status == "ok" and r["user"] == a


def test_one_accounts_backlog_does_not_starve_another(mep):
    """Alice fills her child with long tasks; bob's task is still read and run
    at once (review 19 H2: the parent's window of WINDOW tasks is shared, so
    each account may hold at most USER_TASKS of it; more fail at once)."""
    from funcx.errors import UserEndpointLimit
    from funcx.protocol import error_codes

    a, b = mep["accounts"]
    ca, cb = mep["clients"][a], mep["clients"][b]
    fid = ca.register_function(slow_probe)
    ids = [ca.run(60, endpoint_id=mep["eid"], function_id=fid,
                  user_endpoint_config={"workers": 1}) for _ in range(WINDOW + 1)]
    try:
        status, r = _result(cb, _run_probe(mep, b, []), timeout=20)
        assert status == "ok" and r["user"] == b
        refused = []
        for tid in ids[USER_TASKS:]:  # past her share: each fails at once, saying why
            status, e = _result(ca, tid, timeout=20)
            assert status == "failed" and isinstance(e, UserEndpointLimit), e
            assert e.code == error_codes.USER_ENDPOINT_LIMIT and "max_tasks_per_user" in str(e)
            refused.append(tid)
        assert len(refused) == WINDOW + 1 - USER_TASKS
        # her share is held by her child, not refused
        assert all(ca.get_task(t)["status"] not in ("success", "failed", "cancelled")
                   for t in ids[:USER_TASKS])
    finally:
        ca.cancel(ids[:USER_TASKS])
        assert wait_until(lambda: not any(k["account"] == a and k["outstanding"]
                                          for k in _children(mep["ep"])), 30, 0.2)


def test_a_hostile_manager_holding_the_childs_key_is_cut_off(mep):
    """Alice can read her child's manager key, so she controls her manager: one
    that sends a frame larger than any result is disconnected by ZeroMQ unread
    (MAXMSGSIZE on her child's interchange), and the parent and the other
    users' tasks carry on (review 19 H3)."""
    import zmq

    from endpoint.curve import ManagerKeys
    from funcx.protocol.messages import Kind, pack

    a, b = mep["accounts"]
    status, r = _result(mep["clients"][a], _run_probe(mep, a, []))
    assert status == "ok", r
    kid = [k for k in _children(mep["ep"]) if k["account"] == a and k["alive"]][0]
    key = (Path(pwd.getpwnam(a).pw_dir) / ".funcx" / "multi-user" / mep["eid"] / kid["name"]
           / "manager.key_secret")
    port = int((mep["ep"].path / "run" / "users" / kid["name"] / "interchange_port")
               .read_text())
    parent = daemon_pid(mep)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RECONNECT_IVL, 60_000)  # one connection: its end is the answer
    ManagerKeys.load(key).apply(sock)
    mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)
    try:
        sock.connect(f"tcp://127.0.0.1:{port}")
        events: list[int] = []

        def seen(ev: int) -> bool:
            from zmq.utils.monitor import recv_monitor_message

            while mon.poll(100):
                events.append(recv_monitor_message(mon)["event"])
            return ev in events
        assert wait_until(lambda: seen(zmq.EVENT_HANDSHAKE_SUCCEEDED), 10, 0.05), \
            "the child's key did not open its interchange"
        sock.send_multipart(pack(Kind.RESULTS, [], [b"x" * (40 << 20)]))
        assert wait_until(lambda: seen(zmq.EVENT_DISCONNECTED), 20, 0.05), \
            "the oversized frame's connection was kept"
    finally:
        mon.close(0)
        sock.close(0)
        ctx.term()
    assert daemon_pid(mep) == parent
    for who in (b, a):  # the other user's tasks, and alice's own, still run
        status, r = _result(mep["clients"][who], _run_probe(mep, who, []))
        assert status == "ok" and r["user"] == who
    # cut off unread: the interchange never handled it (it logs every message it
    # drops, e.g. "sent RESULTS before registering")
    log = mep["ep"].log_file.read_text(errors="replace")
    assert "sent RESULTS before registering" not in log and "bad message" not in log


def daemon_pid(mep) -> int:
    from endpoint import daemon

    pid = daemon.running_pid(mep["ep"])
    assert pid and psutil.pid_exists(pid)
    return pid


def test_killing_the_parent_stops_the_children(mep):
    from endpoint import daemon

    a, b = mep["accounts"]
    for who in (a, b):  # both children running
        status, _ = _result(mep["clients"][who], _run_probe(mep, who, []))
        assert status == "ok"
    kids = [c["pid"] for c in _children(mep["ep"])]
    assert len(kids) >= 2
    procs = [psutil.Process(p) for p in kids]
    workers = [w for p in procs for w in p.children(recursive=True)]
    assert workers, "the children have no workers"
    parent = daemon.running_pid(mep["ep"])
    assert parent
    os.kill(parent, signal.SIGKILL)

    assert wait_until(lambda: _gone(procs + workers), 30, 0.2), "children outlived their parent"
    # the endpoint comes back for whatever test runs next (order-independent)
    assert wait_until(lambda: daemon.running_pid(mep["ep"]) is None, 10, 0.1)
    assert daemon.start(EP) == mep["eid"]
    status, r = _result(mep["clients"][a], _run_probe(mep, a, []))
    assert status == "ok" and r["user"] == a
