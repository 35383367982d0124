"""Hostile managers (and submitters) against an endpoint's interchange.

A real :class:`endpoint.interchange.Interchange` runs in this process on a
loopback port with its CurveZMQ keys, and a real legitimate manager process
(``python -m endpoint.manager``, launched from a :class:`ManagerLaunch`, with
two real worker processes) serves it.  The attacker speaks ZeroMQ to the
interchange: without the key, with a random key, or with the endpoint's own
key but lying (results for tasks it was never given, malformed frames).
Each test proves the attack fails *and* that the legitimate manager's tasks
complete meanwhile, through the same interchange thread.

Synchronisation: ZeroMQ monitor events for handshakes, the interchange's own
output (results, "running" updates) and counters for what it refused, each
awaited with a deadline; never a bare sleep.
"""
from __future__ import annotations

import errno
import ipaddress
import math
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tenants import SER, WAIT_S, double, until
from zmq.utils.monitor import recv_monitor_message

from endpoint.curve import ManagerKeys
from endpoint.interchange import Interchange, InterchangeAddressError
from endpoint.launch import ManagerLaunch
from endpoint.manager import Manager
from funcx.errors import TaskTimeout
from funcx.protocol.messages import (
    Kind,
    ProtocolError,
    Register,
    Result,
    StatusUpdate,
    Task,
    pack,
    pack_results,
    pack_tasks,
    unpack,
    unpack_results,
    unpack_tasks,
)

MAX_WALLTIME = 6.0  # the owner's bound on the legitimate manager
CANARY = "canary-" + uuid.uuid4().hex


# ------------------------------------------------------------ remote functions
def snoop():
    """What a function on a public endpoint can see of its host."""
    import os

    return {"env": dict(os.environ), "cwd": os.getcwd(), "pid": os.getpid(),
            "ppid": os.getppid()}


def wait_fifo(path):
    with open(path) as f:
        return "real:" + f.read()


def sleep_long(s):
    import time

    time.sleep(s)
    return "slept"


# --------------------------------------------------------------------- helpers
class Outputs:
    """What the interchange hands to the agent (``on_output``), awaitable."""

    def __init__(self) -> None:
        self.items: list = []
        self.cond = threading.Condition()

    def __call__(self, batch: list) -> None:
        with self.cond:
            self.items.extend(batch)
            self.cond.notify_all()

    def results(self, task_id: str) -> list[Result]:
        with self.cond:
            return [i for i in self.items if isinstance(i, Result) and i.task_id == task_id]

    def running(self, task_id: str) -> bool:
        with self.cond:
            return any(isinstance(i, StatusUpdate) and task_id in i.task_ids for i in self.items)

    def wait_results(self, ids: list[str], timeout: float = WAIT_S) -> dict[str, Result]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = {i.task_id: i for i in self.items
                       if isinstance(i, Result) and i.task_id in ids}
                if len(got) == len(ids):
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no result for {sorted(set(ids) - got.keys())}")
                self.cond.wait(left)


def mktask(fn, *args, spec: dict | None = None) -> Task:
    return Task(task_id=uuid.uuid4().hex, function_id="f-" + fn.__name__,
                payload=SER.serialize_payload(args, {}), task_group_id="g1",
                function_code=SER.serialize_function(fn),
                resource_specification=spec or {})


class Rig:
    """An interchange thread, its output, and one legitimate manager process."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.out = Outputs()
        self.ix = Interchange("127.0.0.1", 0, self.out, heartbeat_period=0.5,
                              heartbeat_threshold=3.0, max_retries=1, poll_period=0.05,
                              key_dir=tmp / "ep" / "run" / "curve")
        self.thread = threading.Thread(target=self.ix.run, name="interchange", daemon=True)
        self.thread.start()
        self.feed = self.ix.feeder()
        self.keys = ManagerKeys.load(self.ix.keys.manager_file)
        self.home = Path(os.environ["FUNCX_HOME"])
        self.launch = ManagerLaunch(addr=self.ix.url, workers=2,
                                    curve_keys=str(self.ix.keys.manager_file),
                                    block_id="7", manager_id="legit-mgr",
                                    heartbeat_period=0.5, heartbeat_threshold=3.0, prefetch=4,
                                    max_walltime=MAX_WALLTIME)
        env = {**os.environ, "FUNCX_SDK_ACCESS_TOKEN": CANARY, "GLOBUS_COMPUTE_SECRET": CANARY,
               "FUNCX_REDIS_URL": f"redis://u:{CANARY}@x"}
        self.log = open(tmp / "manager.log", "wb")
        # started where the owner's files are, as an agent's provider may do
        self.proc = subprocess.Popen(self.launch.command(), env=env, cwd=self.home,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        until(lambda: b"legit-mgr" in self.ix.managers, what="the legitimate manager")

    def run(self, tasks: list[Task], timeout: float = WAIT_S) -> dict[str, Result]:
        self.ix.submit(tasks, self.feed)
        return self.out.wait_results([t.task_id for t in tasks], timeout)

    def legit_work(self, n: int = 4) -> None:
        """The legitimate tenant's tasks complete, with their own values."""
        tasks = [mktask(double, i) for i in range(n)]
        got = self.run(tasks)
        for i, t in enumerate(tasks):
            r = got[t.task_id]
            assert r.status == "success", r.data
            assert SER.deserialize(r.data) == 2 * i
            assert r.details.get("manager") == "legit-mgr"

    def assert_healthy(self) -> None:
        assert self.thread.is_alive(), "the interchange thread died"
        assert self.proc.poll() is None, "the legitimate manager died"
        assert b"legit-mgr" in self.ix.managers

    def close(self) -> None:
        self.ix.stop_event.set()
        self.thread.join(10)
        try:
            self.proc.wait(15)  # told to shut down by the interchange
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.feed.close()
        self.ix.close()
        self.log.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("ixtrust"))
    yield r
    r.close()


def dealer(ix: Interchange, identity: bytes, keys: ManagerKeys | None) -> tuple[zmq.Socket, zmq.Socket]:
    """A DEALER connecting to ``ix`` (CURVE client with ``keys``, else NULL), and
    a monitor socket for its handshake events."""
    ctx: zmq.Context = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.IDENTITY, identity)
    if keys is not None:
        keys.apply(s)
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                               | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                               | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_DISCONNECTED)
    s.connect(ix.url)
    return s, mon


def handshake(mon: zmq.Socket, timeout: float = 20) -> int:
    """The first handshake outcome event seen on a monitor socket."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mon.poll(100):
            ev = recv_monitor_message(mon)["event"]
            if ev != zmq.EVENT_MONITOR_STOPPED:
                return ev
    raise AssertionError("no handshake outcome")


def register_frames(mid: str, capacity: int = 0) -> list[bytes]:
    return pack(Kind.REGISTER, Register(manager_id=mid, workers=1, capacity=capacity,
                                        hostname="attacker"))


def close(*socks: zmq.Socket) -> None:
    for s in socks:
        s.close(linger=0)


# ------------------------------------------------------ 1. keyless managers
@pytest.mark.parametrize("kind", ["plain", "random-curve-key", "server-key-as-client"])
def test_manager_without_the_key_cannot_register_nor_get_tasks(rig, kind):
    # positive control: the endpoint's own key completes the handshake, so the
    # monitor would see a rogue one succeed
    ok, ok_mon = dealer(rig.ix, b"control", rig.keys)
    assert handshake(ok_mon) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    close(ok, ok_mon)

    if kind == "plain":
        keys = None
    elif kind == "random-curve-key":
        pub, sec = zmq.curve_keypair()
        keys = ManagerKeys(rig.keys.server_public, pub, sec)
    else:  # knows the server's public key only, and makes its own pair
        pub, sec = zmq.curve_keypair()
        keys = ManagerKeys(rig.ix.keys.server_public, pub, sec)
    rogue_id = f"rogue-{kind}".encode()
    rogue, mon = dealer(rig.ix, rogue_id, keys)
    try:
        event = handshake(mon)  # the handshake runs on connect, before any send
        assert event != zmq.EVENT_HANDSHAKE_SUCCEEDED
        if keys is not None:
            assert event == zmq.EVENT_HANDSHAKE_FAILED_AUTH  # ZAP refused the key
        try:  # a refused peer has no pipe: a blocking send would wait forever
            rogue.send_multipart(register_frames(rogue_id.decode(), capacity=100),
                                 flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        # the legitimate tenant's tasks run meanwhile, and none went to the rogue
        rig.legit_work(6)
        assert rogue_id not in rig.ix.managers
        assert rogue.poll(200) == 0, "a rogue manager received a message"
        rig.assert_healthy()
    finally:
        close(rogue, mon)


# ------------------------------------------------- 2. forged results (keyed)
def test_results_for_tasks_not_dispatched_to_the_sender_are_dropped(rig, tmp_path):
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    evil, mon = dealer(rig.ix, b"evil-mgr", rig.keys)
    try:
        assert handshake(mon) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        evil.send_multipart(register_frames("evil-mgr", capacity=0))  # gets no task
        until(lambda: b"evil-mgr" in rig.ix.managers, what="evil-mgr registered")

        victim = mktask(wait_fifo, str(fifo))
        rig.ix.submit([victim], rig.feed)
        until(lambda: rig.out.running(victim.task_id), what="the victim task running")
        assert victim.task_id in rig.ix.managers[b"legit-mgr"].tasks

        before = dict(rig.ix.stats)
        forged = [Result(victim.task_id, "success", data=SER.serialize("forged")),
                  Result("never-dispatched", "success", data=SER.serialize("forged"))]
        evil.send_multipart(pack_results(forged))
        evil.send_multipart(pack(Kind.RUNNING, [victim.task_id, "never-dispatched"]))
        until(lambda: rig.ix.stats["foreign_results"] == before["foreign_results"] + 2
              and rig.ix.stats["foreign_running"] == before["foreign_running"] + 2,
              what="the forged messages refused")
        assert rig.out.results(victim.task_id) == []
        assert rig.out.results("never-dispatched") == []
        # the legit manager still holds the task; it gets its real result
        assert victim.task_id in rig.ix.managers[b"legit-mgr"].tasks

        deadline = time.monotonic() + WAIT_S
        while True:  # the worker opens the FIFO for reading when it runs
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        os.write(fd, b"go")
        os.close(fd)
        got = rig.out.wait_results([victim.task_id])[victim.task_id]
        assert got.status == "success" and SER.deserialize(got.data) == "real:go"
        assert [SER.deserialize(r.data) for r in rig.out.results(victim.task_id)] == ["real:go"]
        rig.legit_work()
        rig.assert_healthy()
    finally:
        close(evil, mon)


# -------------------------------------------- 3. malformed manager messages
def _malformed() -> list[list[bytes]]:
    v = bytes([1])
    row = ["t-1", "success", "", "1.0", None]
    return [
        [b"garbage"],
        [b"", b""],
        [v + b"REGISTER", b"{not json"],
        [v + b"REGISTER", b'{"manager_id": "x", "workers": "abc", "capacity": 1}'],
        [v + b"REGISTER", b'{"manager_id": "x", "workers": 1, "capacity": 1, "evil": 1}'],
        [v + b"REGISTER", b"[" * 50_000],
        # msgspec raises RecursionError here (an Any-typed field), not a DecodeError
        [v + b"RESULTS", b'[["t-1","success","","1.0",{"a":' + b"[" * 50_000, b"", b""],
        [bytes([9]) + b"REGISTER", b"{}"],
        [v + b"NOPE", b"null"],
        [v + b"HEARTBEAT", b'{"t": "x"}'],
        [v + b"HEARTBEAT", b"[1, 2]"],
        [v + b"HEARTBEAT", b'{"containers": [{"a": 1}]}'],
        [v + b"RESULTS", b'{"a": 1}'],
        pack(Kind.RESULTS, [row]),  # no payload frames
        pack(Kind.RESULTS, [row], [b"\xff\xfe", b""]),  # not UTF-8
        pack(Kind.RESULTS, [["../../x", "success"]], [b"", b""]),
        pack(Kind.RESULTS, [["t-1", "owned"]], [b"", b""]),
        [v + b"RUNNING", b'["../../etc/passwd"]'],
        [v + b"RUNNING", b'"t-1"'],
        [v + b"RESULTS", b'[["t-1","success","","1.0",null]]', b"x" * 1_000_000],
    ]


def test_malformed_messages_from_an_authenticated_manager(rig):
    fuzz, mon = dealer(rig.ix, b"fuzz-mgr", rig.keys)
    try:
        assert handshake(mon) == zmq.EVENT_HANDSHAKE_SUCCEEDED
        tasks = [mktask(double, i) for i in range(6)]
        rig.ix.submit(tasks, rig.feed)  # legit work in flight during the attack
        refused = lambda: rig.ix.stats["bad_messages"] + rig.ix.stats["unregistered"]  # noqa: E731
        before = refused()
        bad = _malformed()
        for frames in bad:  # before it registered: malformed REGISTERs among them
            fuzz.send_multipart(frames)
        until(lambda: refused() - before == len(bad), what="every malformed message refused")
        assert b"fuzz-mgr" not in rig.ix.managers  # no malformed REGISTER registered it

        fuzz.send_multipart(register_frames("fuzz-mgr", capacity=0))
        until(lambda: b"fuzz-mgr" in rig.ix.managers, what="fuzz-mgr registered")
        before = rig.ix.stats["bad_messages"]
        again = [*bad, pack_tasks([mktask(double, 1)]), pack(Kind.SHUTDOWN), pack(Kind.READY)]
        for frames in again:  # and again, registered
            fuzz.send_multipart(frames)
        # re-register (a reconnect): its capacity stays as first registered
        fuzz.send_multipart(register_frames("fuzz-mgr", capacity=1000))
        until(lambda: rig.ix.stats["bad_messages"] - before == len(again),
              what="every malformed message refused (registered)")
        assert rig.ix.managers[b"fuzz-mgr"].credits == 0

        got = rig.out.wait_results([t.task_id for t in tasks])
        assert all(r.status == "success" for r in got.values())
        assert sorted(SER.deserialize(r.data) for r in got.values()) == [0, 2, 4, 6, 8, 10]
        rig.legit_work()
        rig.assert_healthy()
        assert rig.ix.stats["loop_errors"] == 0
    finally:
        close(fuzz, mon)


# -------------------------------------- 4. a submitter's resource_specification
def test_hostile_resource_specifications_do_not_crash_the_manager(rig):
    pid = rig.proc.pid
    quick_bad = [mktask(double, i, spec=s) for i, s in enumerate([
        {"walltime": "abc"}, {"walltime": -1}, {"walltime": True}, {"walltime": [1]},
        {"walltime": None}, {"walltime": {"$gt": 0}}])]
    refused = [mktask(double, 1, spec={"num_nodes": "x"}),
               mktask(double, 1, spec={"rm -rf": 1})]
    unbounded = [mktask(sleep_long, 120, spec={"walltime": 1e9}),
                 mktask(sleep_long, 120, spec={"walltime": 0})]
    legit = [mktask(double, 100 + i) for i in range(4)]
    start = time.monotonic()
    got = rig.run(unbounded + quick_bad + refused + legit, timeout=WAIT_S + MAX_WALLTIME)
    for t in quick_bad:  # a bad walltime: the endpoint's default (bounded) applies
        assert got[t.task_id].status == "success", got[t.task_id].data
    for t in refused:  # malformed otherwise: that task alone fails, saying why
        r = got[t.task_id]
        assert r.status == "failed" and "resource_specification" in r.data, r.data
    for t in unbounded:  # 1e9 and 0 cannot lift the owner's bound
        r = got[t.task_id]
        assert r.status == "failed"
        err = SER.deserialize(r.exc_data)
        assert isinstance(err, TaskTimeout) and err.walltime == MAX_WALLTIME
    assert time.monotonic() - start < 120 * 0.5
    for i, t in enumerate(legit):
        assert SER.deserialize(got[t.task_id].data) == 2 * (100 + i)
    assert rig.proc.pid == pid and rig.proc.poll() is None
    rig.assert_healthy()
    rig.legit_work()


# ------------------------------------------------------- 5. worker's surroundings
def test_worker_environment_is_scrubbed_and_outside_funcx_home(rig):
    t = mktask(snoop)
    r = rig.run([t])[t.task_id]
    assert r.status == "success", r.data
    seen = SER.deserialize(r.data)
    env, cwd = seen["env"], Path(seen["cwd"]).resolve()
    funcx = {k for k in env if k.startswith(("FUNCX_", "GLOBUS_"))}
    assert funcx <= {"FUNCX_MANAGER_PID", "FUNCX_WORKER_MEMORY_GB", "FUNCX_CONTAINER_ID",
                     "FUNCX_MAX_RESULT_BYTES", "FUNCX_TASK_OUTPUT_MAX",
                     "FUNCX_TASK_OUTPUT_PREFIX", "FUNCX_WORKER_CPUS",
                     "FUNCX_TASK_ID", "FUNCX_TASK_SANDBOX_DIR"}, funcx  # set while a task runs
    assert "FUNCX_HOME" not in env and "FUNCX_MANAGER_PID" in env
    keys = (rig.keys.secret.decode(), rig.keys.public.decode(), rig.keys.server_public.decode())
    for value in env.values():
        assert CANARY not in value
        assert not any(k in value for k in keys)
        assert str(rig.ix.keys.directory) not in value
    home = rig.home.resolve()
    assert home not in cwd.parents and cwd != home
    assert not (cwd / "credentials").exists()
    # nor are the keys on any command line (ps) of the manager or its workers
    mgr = psutil.Process(rig.proc.pid)
    for p in [mgr, *mgr.children()]:
        cmd = " ".join(p.cmdline())
        assert not any(k in cmd for k in keys)
    assert seen["ppid"] == rig.proc.pid
    assert oct(rig.ix.keys.manager_file.stat().st_mode & 0o777) == "0o600"
    rig.assert_healthy()


# ---------------------------------------------------------- 6. listen address
def _listening(port: int) -> set[str]:
    return {c.laddr.ip for c in psutil.Process().net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


def _other_address() -> str | None:
    """A non-loopback IPv4 address of this host, if it has one."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return None


def test_interchange_binds_only_its_configured_address(rig, tmp_path):
    assert _listening(rig.ix.port) == {"127.0.0.1"}  # the running one
    lo = Interchange("127.0.0.1", 0, lambda _: None, 0.5, 3.0, 1, key_dir=tmp_path / "k0")
    try:
        assert lo.router.getsockopt(zmq.LAST_ENDPOINT).decode() == f"tcp://127.0.0.1:{lo.port}"
        assert _listening(lo.port) == {"127.0.0.1"}
    finally:
        lo.close()

    other = _other_address()
    if other is not None:  # an address of this host that is not loopback
        ix = Interchange(other, 0, lambda _: None, 0.5, 3.0, 1, key_dir=tmp_path / "k1")
        try:
            assert ix.router.getsockopt(zmq.LAST_ENDPOINT).decode() == f"tcp://{other}:{ix.port}"
            assert _listening(ix.port) == {other}  # not 0.0.0.0, not loopback
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", ix.port), timeout=5).close()
        finally:
            ix.close()
    wild = Interchange("0.0.0.0", 0, lambda _: None, 0.5, 3.0, 1, key_dir=tmp_path / "k2")
    try:  # every interface only when the owner configured exactly that
        assert _listening(wild.port) == {"0.0.0.0"}
    finally:
        wild.close()
    with pytest.raises(InterchangeAddressError, match="192.0.2.1"):  # not this host's
        Interchange("192.0.2.1", 0, lambda _: None, 0.5, 3.0, 1, key_dir=tmp_path / "k3")
    rig.legit_work(2)


# ------------------------------------------------------- 7. decoders, fuzzed
KINDS = [Kind.REGISTER, Kind.TASKS, Kind.RESULTS, Kind.RUNNING, Kind.HEARTBEAT, Kind.SHUTDOWN,
         Kind.READY, Kind.REREGISTER, b"", b"BOGUS"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=5),
    max_leaves=20)


def _frames_strategy():
    import msgspec

    structured = st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from(KINDS), json_values,
                           st.lists(st.binary(max_size=20), max_size=4)).map(
        lambda t: [bytes([t[0]]) + t[1], msgspec.json.encode(t[2]), *t[3]])
    return st.lists(st.binary(max_size=64), max_size=6) | structured


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=_frames_strategy())
def test_unpack_raises_only_protocol_error(frames):
    try:
        msg = unpack(frames)
    except ProtocolError:
        return
    try:  # and what unpacked decodes further the same way
        if msg.kind == Kind.RESULTS:
            unpack_results(msg)
        elif msg.kind == Kind.TASKS:
            unpack_tasks(msg)
    except ProtocolError:
        pass


def test_unpack_deeply_nested_header_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        unpack([bytes([1]) + Kind.RESULTS,
                b'[["t","success","","1.0",{"a":' + b"[" * 50_000, b"", b""])


ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
texts = st.text(max_size=50)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(ids, st.sampled_from(["success", "failed"]), texts, texts,
                               st.from_regex(r"[A-Za-z0-9._-]{0,64}", fullmatch=True)),
                     max_size=5))
def test_results_round_trip(rows):
    results = [Result(i, s, data=d, exc_data=e, task_group_id=g, completion_t="1700000000.5")
               for i, s, d, e, g in rows]
    back = unpack_results(unpack(pack_results(results)))
    assert [(r.task_id, r.status, r.data, r.exc_data, r.task_group_id, r.completion_t)
            for r in back] == [(r.task_id, r.status, r.data, r.exc_data, r.task_group_id,
                                r.completion_t) for r in results]


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.tuples(ids, ids, texts, texts, st.integers(0, 1000)), max_size=5))
def test_tasks_round_trip(rows):
    tasks = [Task(task_id=i, function_id=f, payload=p, function_code=c, attempt=a,
                  resource_specification={"walltime": 5.0}) for i, f, p, c, a in rows]
    back = unpack_tasks(unpack(pack_tasks(tasks)))
    assert back == tasks


@settings(max_examples=100, deadline=None)
@given(mid=st.text(max_size=40), workers=st.integers(1, 100), cap=st.integers(0, 1000))
def test_register_round_trips(mid, workers, cap):
    reg = Register(manager_id=mid, workers=workers, capacity=cap, hostname="h")
    assert unpack(pack(Kind.REGISTER, reg)).header == reg


@pytest.fixture(scope="module")
def idle_ix(tmp_path_factory):
    """An interchange whose loop is not running: its handler is called directly."""
    out = Outputs()
    ix = Interchange("127.0.0.1", 0, out, 0.5, 3.0, 1,
                     key_dir=tmp_path_factory.mktemp("idle") / "curve")
    ix.out = out
    yield ix
    ix.close()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(frames=_frames_strategy())
def test_interchange_handler_never_raises_nor_forwards_foreign_results(idle_ix, frames):
    idle_ix._on_manager_safe([b"fuzzer", *frames])
    idle_ix._on_manager_safe([b"fuzzer", *register_frames("fuzzer")])
    idle_ix._on_manager_safe([b"fuzzer", *frames])
    assert not any(isinstance(i, Result) for i in idle_ix.out.items)


@pytest.fixture(scope="module")
def idle_manager(tmp_path_factory, idle_ix):
    """A manager whose loop is not running (no workers): handlers called directly."""
    launch = ManagerLaunch(addr=idle_ix.url, workers=1, curve_keys=str(idle_ix.keys.manager_file),
                           walltime=30.0, max_walltime=60.0)
    m = Manager(launch)
    yield m
    m.shutdown()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=st.dictionaries(st.sampled_from(["walltime", "num_nodes", "x", "launcher_options"]),
                            json_values | st.floats(), max_size=3),
       frames=_frames_strategy())
def test_manager_handlers_never_raise_and_bound_walltime(idle_manager, spec, frames):
    m = idle_manager
    m.pending.clear()
    m.results.clear()
    m._handle("fuzz", m.on_interchange, frames)
    m._handle("fuzz", m.on_worker, [b"0.1", *frames])
    task = mktask(double, 1, spec=spec)
    m._handle("fuzz", m.on_interchange, pack_tasks([task]))
    queued = [t for t in m.pending if t.task_id == task.task_id]
    failed = [r for r in m.results if r.task_id == task.task_id]
    assert len(queued) + len(failed) == 1  # queued, or failed alone with its reason
    if queued:
        w = m.walltime_of(queued[0])
        assert w is not None and 0 < w <= 60.0 and not math.isnan(w)
    else:
        assert "resource_specification" in failed[0].data
