"""Several result ingesters on one Redis (several per service host, several hosts).

A real redis-server, real ``python -m backend.ingester`` processes and results
written by the endpoint's own Redis ACL user, as an agent writes them.  Each
ingester reads under its own consumer name; each endpoint's results are read
and applied by the one ingester holding its lease (rendezvous hashing over the
live ingesters), so every result is applied exactly once (task record + one
completion event) and one endpoint's results in the order they were written;
what a dead ingester read and never acknowledged is claimed by the one that
takes its streams over.  One ingester may run in its own UTS namespace
(``unshare --uts``) so it is, to the others, an ingester of another host.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from funcx.protocol.messages import Result
from funcx.protocol.streams import encode_results

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = "00\ngASVBQAAAAAAAABLAUsChpQu\n"  # any opaque string: the backend never opens it


def until(pred: Callable[[], object], timeout: float, what: str) -> object:
    """Poll Redis-side state (no event to wait on across processes) until ``pred``."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        threading.Event().wait(0.05)


def _binaries() -> list:
    from backend.embedded import redis_server_binary

    out = [pytest.param(redis_server_binary(), id="embedded-redis")]
    system = shutil.which("redis-server")  # Debian's 7.x: XAUTOCLAIM drops deleted entries
    if system and os.path.realpath(system) != os.path.realpath(redis_server_binary()):
        out.append(pytest.param(system, id="system-redis"))
    return out


@pytest.fixture(params=_binaries())
def redis_url(request, tmp_path) -> Iterator[str]:
    from backend.embedded import free_port

    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen([request.param, "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", str(tmp_path), "--save", "",
                             "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    until(lambda: _pings(client, proc), 20, "redis-server to answer")
    yield url
    proc.terminate()
    proc.wait(10)


def _pings(client: redis.Redis, proc: subprocess.Popen) -> bool:
    assert proc.poll() is None, "redis-server exited"
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@dataclass
class Fabric:
    """One user, an endpoint and its tasks, on the test's Redis."""

    url: str
    r: redis.Redis
    uid: str = ""
    fid: str = ""
    eids: list[str] = field(default_factory=list)
    agent_urls: dict[str, str] = field(default_factory=dict)

    def endpoint(self) -> str:
        from backend.store import endpoints

        reg = endpoints.register(self.r, self.uid, self.url, name=f"ep-{len(self.eids)}")
        self.eids.append(reg["endpoint_id"])
        self.agent_urls[reg["endpoint_id"]] = reg["redis_url"]
        return reg["endpoint_id"]

    def submit(self, eid: str, n: int) -> tuple[str, list[str]]:
        from backend.store import quotas
        from backend.store.tasks import TaskStore

        tg = str(uuid.uuid4())
        batch = quotas.Batch(eid, [(self.fid, PAYLOAD)] * n, {self.fid: "code"})
        return tg, TaskStore(self.r).submit_batches(self.uid, tg, [batch])

    def report(self, eid: str, tids: list[str], per_entry: int) -> int:
        """Write the tasks' results as the endpoint's agent would (its own
        credentials), ``per_entry`` results per stream entry; return the entries."""
        agent = redis.Redis.from_url(self.agent_urls[eid])
        with agent.pipeline(transaction=False) as p:
            for i in range(0, len(tids), per_entry):
                p.xadd(f"fx:ep:{eid}:results", encode_results(
                    [Result(t, "success", data=f"00\nresult-{t}", completion_t=repr(time.time()))
                     for t in tids[i:i + per_entry]]))
            n = len(p.execute())
        agent.close()
        return n

    def statuses(self, tids: list[str]) -> list[str]:
        with self.r.pipeline(transaction=False) as p:
            for t in tids:
                p.hget(f"fx:task:{t}", "status")
            return p.execute()

    def all_done(self, tids: list[str]) -> bool:
        return all(s == "success" for s in self.statuses(tids))

    def events(self, tg: str) -> list[str]:
        return [f["task_id"] for _, f in self.r.xrange(f"fx:tg:{tg}:events")]

    def consumers(self, stream: str) -> dict[str, dict]:
        try:
            return {c["name"]: c for c in self.r.xinfo_consumers(stream, "ingester")}
        except redis.ResponseError:
            return {}


@pytest.fixture
def fabric(redis_url) -> Iterator[Fabric]:
    from backend.store import functions, users

    r = redis.Redis.from_url(redis_url, decode_responses=True)
    f = Fabric(redis_url, r)
    f.uid = users.create_user(r, "alice")
    f.fid = functions.register(r, f.uid, function_name="f", function_code="code")
    yield f
    r.close()


class IngesterProc:
    """``python -m backend.ingester`` as a process, optionally as another host."""

    def __init__(self, url: str, home: Path, log: Path, *, host: str | None = None, **env: str):
        full = {**os.environ, "FUNCX_REDIS_URL": url, "FUNCX_HOME": str(home),
                "FUNCX_INGEST_READ_COUNT": "5", "FUNCX_INGEST_BLOCK_MS": "200",
                "PYTHONPATH": str(ROOT), **env}
        cmd = [sys.executable, "-m", "backend.ingester"]
        if host:  # its own hostname: to the others, an ingester of another host
            cmd = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *cmd]
        self.log = log
        self.out = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=full, stdout=self.out, stderr=subprocess.STDOUT,
                                     cwd=ROOT)

    def name(self) -> str:
        """Its consumer name, from its first log line."""
        m = until(lambda: re.search(r"ingester (\S+) started", self.log.read_text()), 60,
                  "the ingester to start")
        assert isinstance(m, re.Match)
        return m.group(1)

    def stop(self) -> dict[str, int]:
        """SIGTERM; the counts its last log line reports."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
        self.proc.wait(30)
        self.out.close()
        text = self.log.read_text()
        m = re.search(r"stopped after applying (\d+) results \((\d+) refused, (\d+) entries "
                      r"claimed", text)
        assert m, text[-2000:]
        return {"applied": int(m.group(1)), "refused": int(m.group(2)),
                "claimed": int(m.group(3))}

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        self.out.close()


def _blocked_reader(r: redis.Redis) -> bool:
    """Some client is blocked in XREADGROUP (an ingester waiting for entries)."""
    return any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "")
               for c in r.client_list())


def _in_wake_group(f: Fabric, name: str) -> bool:
    return name in f.consumers("fx:ingester:wake")


def _names(procs: list[IngesterProc]) -> list[str]:
    names = [p.name() for p in procs]
    assert len(set(names)) == len(names)
    return names


def _settled(f: Fabric, names: list[str]) -> bool:
    """Every endpoint's lease is held by the ingester rendezvous hashing means
    it for, among exactly ``names`` (all of them live)."""
    from backend.store.ingest_leases import owner

    live = set(f.r.zrange("fx:ingester:live", 0, -1))
    return live == set(names) and all(
        f.r.get(f"fx:ingester:lease:{e}") == owner(e, names) for e in f.eids)


def _in_order(f: Fabric, work: dict[str, tuple[str, list[str]]]) -> None:
    """Each endpoint's completion events came in the order its results were
    written: its entries were applied by one ingester at a time, in order."""
    for eid, (tg, tids) in work.items():
        assert f.events(tg) == tids, f"endpoint {eid}: results applied out of order"


def test_ingesters_share_the_endpoints_and_apply_each_one_in_order(fabric, tmp_path):
    f = fabric
    procs = [IngesterProc(f.url, tmp_path / "a", tmp_path / "a.log", host="service-host-a"),
             IngesterProc(f.url, tmp_path / "b", tmp_path / "b.log"),
             IngesterProc(f.url, tmp_path / "c", tmp_path / "c.log")]
    try:
        names = _names(procs)
        assert any(n.startswith("service-host-a:") for n in names)
        until(lambda: _settled(f, names), 60, "all three ingesters to be live")
        # endpoints registered now: each wake entry reaches one ingester, the owner takes it
        for _ in range(5):
            f.endpoint()
        until(lambda: _settled(f, names), 30, "the new endpoints to be shared out")
        holder = {e: f.r.get(f"fx:ingester:lease:{e}") for e in f.eids}
        work = {eid: f.submit(eid, 120) for eid in f.eids}
        for eid, (_, tids) in work.items():
            f.report(eid, tids, per_entry=3)
        every = [t for _, tids in work.values() for t in tids]
        until(lambda: f.all_done(every), 120, "every result to be applied")
        # a second copy of each result (an agent that resent after a reconnect) changes nothing
        for eid, (_, tids) in work.items():
            f.report(eid, tids, per_entry=50)
        until(lambda: all(f.r.xlen(f"fx:ep:{e}:results") == 0 for e in work), 60,
              "the resent results to be read and acknowledged")
        assert holder == {e: f.r.get(f"fx:ingester:lease:{e}") for e in f.eids}  # stable
        # only an endpoint's holder ever read its stream
        for eid in f.eids:
            assert set(f.consumers(f"fx:ep:{eid}:results")) == {holder[eid]}
    finally:
        counts = dict(zip(names, [p.stop() for p in procs]))
    for name, c in counts.items():  # each applied exactly the results of its own endpoints
        assert c["applied"] == sum(len(work[e][1]) for e in f.eids if holder[e] == name), counts
        assert c["refused"] == 0, counts
    _in_order(f, work)
    recs = [f.r.hgetall(f"fx:task:{t}") for t in every[:50]]
    assert all(rec["result"] == f"00\nresult-{rec['task_id']}" for rec in recs)
    for eid in work:
        assert f.r.xpending(f"fx:ep:{eid}:results", "ingester")["pending"] == 0
        assert f.r.get(f"fx:ep:{eid}:outstanding") in (None, "0")
    assert f.r.xlen("fx:deadletters") == 0
    # a clean stop hands everything back at once
    assert f.r.zcard("fx:ingester:live") == 0
    assert all(f.r.get(f"fx:ingester:lease:{e}") is None for e in f.eids)


@pytest.mark.slow  # SIGKILL and takeover, ~4 s per Redis binary: the slow CI step
def test_a_killed_ingester_s_endpoints_are_taken_over_and_nothing_is_applied_twice(fabric,
                                                                                   tmp_path):
    f = fabric
    for _ in range(4):
        f.endpoint()
    procs = [IngesterProc(f.url, tmp_path / n, tmp_path / f"{n}.log", FUNCX_INGEST_LEASE_S="3")
             for n in ("a", "b", "c")]
    names = _names(procs)
    until(lambda: _settled(f, names), 60, "the endpoints to be shared out")
    holder = {e: f.r.get(f"fx:ingester:lease:{e}") for e in f.eids}
    victim = max(names, key=lambda n: sum(1 for h in holder.values() if h == n))
    work = {eid: f.submit(eid, 400) for eid in f.eids}
    stop = threading.Event()

    def write() -> None:  # results keep coming while the victim dies
        for i in range(0, 400, 8):
            for eid, (_, tids) in work.items():
                f.report(eid, tids[i:i + 8], per_entry=2)
            if stop.wait(0.05):
                return

    writer = threading.Thread(target=write)
    writer.start()
    every = [t for _, tids in work.values() for t in tids]
    mine = [t for e, (_, tids) in work.items() if holder[e] == victim for t in tids]
    try:
        until(lambda: sum(s == "success" for s in f.statuses(mine)) >= 40, 60,
              "the victim to apply some of its endpoints' results")
        assert writer.is_alive(), "the kill came after the last result was written"
        procs[names.index(victim)].kill()  # SIGKILL
        writer.join(120)
        until(lambda: f.all_done(every), 120, "every result to be applied after the kill")
        until(lambda: all(f.r.xlen(f"fx:ep:{e}:results") == 0 for e in work), 60,
              "every entry to be acknowledged")
        survivors = [n for n in names if n != victim]
        until(lambda: _settled(f, survivors), 30, "the victim's endpoints to be taken over")
    finally:
        stop.set()
        writer.join(30)
        counts = [p.stop() for n, p in zip(names, procs) if n != victim]
    assert all(c["refused"] == 0 for c in counts), counts
    logs = "".join(p.log.read_text() for n, p in zip(names, procs) if n != victim)
    assert f"ingesters {victim} of this host are gone" in logs
    for tg, tids in work.values():  # one completion event per task: none applied twice
        assert len(f.events(tg)) == len(tids)
    _in_order(f, work)  # and each endpoint's in order, through the takeover
    for eid in work:
        assert f.r.xpending(f"fx:ep:{eid}:results", "ingester")["pending"] == 0
        assert f.r.get(f"fx:ep:{eid}:outstanding") in (None, "0")


def _held_by_old(f: Fabric, n: int):
    """A new endpoint with ``n`` tasks submitted, whose results stream is held
    by an in-process ingester named as one of another host:
    (eid, task group, task ids, stream, that ingester)."""
    from backend.ingester import Ingester
    from backend.redis_conn import connect

    eid = f.endpoint()
    tg, tids = f.submit(eid, n)
    stream = f"fx:ep:{eid}:results"
    old = Ingester(connect(f.url), consumer="host-a:1:1.00")
    old.refresh_streams()
    old.tick()
    assert old.held == [stream]
    return eid, tg, tids, stream, old


def test_an_ingester_without_the_lease_writes_nothing(fabric):
    """The fence: an ingester whose lease went to another (it was paused, the
    other took over) applies and acknowledges nothing; what it read stays
    pending, and the holder claims and applies it."""
    from backend.ingester import Ingester
    from backend.redis_conn import connect

    f = fabric
    eid, tg, tids, stream, old = _held_by_old(f, 6)
    f.report(eid, tids, per_entry=3)
    _, got = old.io.new(old.held, 10, 100)  # it reads ... and is paused before applying
    assert sum(len(items) for _, items in got) == 2
    # meanwhile another (live) ingester took the lease over
    f.r.zadd("fx:ingester:live", {"host-b:2:2.00": time.time() * 1000 + 60_000})
    f.r.set(f"fx:ingester:lease:{eid}", "host-b:2:2.00")
    assert old.handle(got) == 2
    assert old.applied == 0 and old.held == [] and f.statuses(tids) == ["waiting-for-ep"] * 6
    assert f.r.xpending(stream, "ingester")["pending"] == 2 and f.r.xlen(stream) == 2
    assert f.events(tg) == []
    f.r.delete(f"fx:ingester:lease:{eid}")
    f.r.zrem("fx:ingester:live", "host-a:1:1.00")  # the old one is gone
    new = Ingester(connect(f.url), consumer="host-b:2:2.00")
    new.refresh_streams()
    new.tick()  # takes the lease, claims what the old one read, applies it
    assert new.held == [stream] and new.applied == 6 and new.claimed == 2
    assert f.all_done(tids) and f.events(tg) == tids
    assert f.r.xpending(stream, "ingester")["pending"] == 0 and f.r.xlen(stream) == 0


def test_rendezvous_shares_endpoints_evenly_and_moves_only_a_leaver_s_share():
    import uuid

    from backend.store.ingest_leases import owner

    eids = [str(uuid.uuid4()) for _ in range(3000)]
    four = [f"host:{i}:1.00" for i in range(4)]
    by = {e: owner(e, four) for e in eids}
    shares = [sum(1 for o in by.values() if o == n) for n in four]
    assert all(600 < s < 900 for s in shares), shares  # 750 each, give or take
    three = four[:3]
    for e in eids:  # only the leaver's endpoints move
        assert owner(e, three) == by[e] or by[e] == four[3]
    assert owner(eids[0], []) is None
    assert owner(eids[0], list(reversed(four))) == by[eids[0]]  # whatever the order


def _read_then_die(f: Fabric, eid: str, ingester: IngesterProc, entries: Callable[[], object]) \
        -> str:
    """Let ``ingester`` take entries and never acknowledge them: stopped while
    blocked in its read, it is handed the first entry written, then killed."""
    name = ingester.name()
    until(lambda: _in_wake_group(f, name) and _blocked_reader(f.r), 30,
          "the ingester to block in its read")
    ingester.proc.send_signal(signal.SIGSTOP)
    entries()
    stream = f"fx:ep:{eid}:results"
    until(lambda: f.consumers(stream).get(name, {}).get("pending"), 30,
          "the stopped ingester to be handed an entry")
    ingester.kill()
    return name


@pytest.mark.slow  # an endpoint (or ingester) waited through timeouts: the slow CI step
def test_a_dead_ingester_of_another_host_has_its_streams_taken_over_when_its_lease_lapses(
        fabric, tmp_path):
    f = fabric
    eid = f.endpoint()
    tg, tids = f.submit(eid, 60)
    dead = IngesterProc(f.url, tmp_path / "a", tmp_path / "a.log", host="service-host-a",
                        FUNCX_INGEST_LEASE_S="3")
    stream = f"fx:ep:{eid}:results"
    # the first entry (40 results) goes to the stopped ingester; the last 20 stay unread
    name = _read_then_die(f, eid, dead, lambda: (f.report(eid, tids[:40], per_entry=40),
                                                 f.report(eid, tids[40:], per_entry=5)))
    held = f.consumers(stream)[name]["pending"]
    assert held == 1
    live = IngesterProc(f.url, tmp_path / "b", tmp_path / "b.log",
                        FUNCX_INGEST_LEASE_S="3", FUNCX_INGEST_CONSUMER_EXPIRE_S="2")
    try:
        live_name = live.name()
        # nothing is applied while the dead one's lease holds; then all of it, its entry first
        until(lambda: f.all_done(tids), 60, "the dead ingester's stream to be taken over")
        assert f.events(tg) == tids
        # the dead consumer, holding nothing now, is removed from the groups
        until(lambda: name not in f.consumers(stream) and not _in_wake_group(f, name), 30,
              "the dead ingester's consumer to be removed")
        assert live_name in f.consumers(stream)
    finally:
        counts = live.stop()
    assert counts["applied"] == 60 and counts["claimed"] == 1, counts
    assert f"claimed 1 entries of {stream} that {name} held" in live.log.read_text()
    assert f.r.xpending(stream, "ingester")["pending"] == 0 and f.r.xlen(stream) == 0


def test_a_dead_ingester_of_this_host_is_taken_over_at_once(fabric, tmp_path):
    """After a crash or power cut, a restarted ingester (new pid, so a new
    name) takes over what its predecessor held without waiting for its lease
    (10 minutes here) to lapse."""
    f = fabric
    eid = f.endpoint()
    tg, tids = f.submit(eid, 30)
    dead = IngesterProc(f.url, tmp_path / "a", tmp_path / "a.log", FUNCX_INGEST_LEASE_S="600")
    name = _read_then_die(f, eid, dead, lambda: f.report(eid, tids, per_entry=30))
    assert f.r.get(f"fx:ingester:lease:{eid}") == name
    live = IngesterProc(f.url, tmp_path / "b", tmp_path / "b.log")
    try:
        until(lambda: f.all_done(tids), 60, "the predecessor's results to be claimed")
    finally:
        counts = live.stop()
    assert counts == {"applied": 30, "refused": 0, "claimed": 1}
    assert f"ingesters {name} of this host are gone" in live.log.read_text()
    assert f.events(tg) == tids


@pytest.fixture(autouse=True)
def _needs_unshare(request):
    if "fabric" in request.fixturenames and (os.geteuid() != 0 or not shutil.which("unshare")):
        pytest.skip("another host's ingester is emulated with `unshare --uts` (needs root)")


def test_forgetting_a_consumer_never_loses_what_it_held(fabric):
    """A consumer judged dead (silent, nothing pending) that reads entries
    between that judgement and its removal: the remover gets what it read
    and applies it (in-process ingesters; the judgement is a stale snapshot)."""
    from backend.ingester import Ingester
    from backend.redis_conn import connect

    f = fabric
    eid = f.endpoint()
    tg, tids = f.submit(eid, 10)
    stream = f"fx:ep:{eid}:results"
    me = Ingester(connect(f.url), consumer="host-b:2:2.00")
    me.refresh_streams()
    me.tick()  # it holds the stream's lease: it is the one that forgets there
    assert me.held == [stream]
    ghost = Ingester(connect(f.url), consumer="host-a:1:1.00")
    ghost.refresh_streams()
    assert ghost.io.pending(stream, 10) == [[stream.encode(), []]]  # it exists, holding nothing
    snapshot = me.io.consumers([me.io.wake_stream(), stream])
    assert ("host-a:1:1.00", 0) in [(n, p) for n, p, _ in snapshot[stream]]
    f.report(eid, tids, per_entry=5)
    _, got = ghost.io.new([stream], 10, 100)  # ... then it reads after all
    assert sum(len(items) for _, items in got) == 2
    me.io.consumers = lambda streams: snapshot  # type: ignore[method-assign]
    me.expire_s = 0.0
    assert me.forget_dead() >= 1
    assert "host-a:1:1.00" not in f.consumers(stream)
    assert f.all_done(tids) and sorted(f.events(tg)) == sorted(tids)
    assert me.applied == 10 and f.r.xlen(stream) == 0


def test_results_are_applied_after_redis_forgets_its_scripts(fabric):
    """The apply path sends its scripts by EVALSHA alone (no SCRIPT EXISTS
    round trip each batch); after a Redis restart (here SCRIPT FLUSH) they are
    loaded again and the batch applied, once."""
    from backend.store.results import ResultStore

    f = fabric
    eid = f.endpoint()
    tg, tids = f.submit(eid, 4)
    store = ResultStore(f.r)
    done = store.apply([Result(tids[0], "success", data="00\na")], eid)
    assert done.applied == 1 and not done.fenced
    f.r.script_flush()
    done = store.apply([Result(t, "success", data="00\nb") for t in tids], eid)
    assert done.applied == 3 and f.all_done(tids)
    assert f.events(tg) == tids  # one completion event each
    assert f.r.hget(f"fx:task:{tids[0]}", "result") == "00\na"  # the first result stands


def test_a_stream_taken_in_the_middle_of_a_batch_is_claimed_before_it_is_read(fabric):
    """An ingester renews its leases while it applies a long batch, and may
    take a stream there.  What the previous holder read and never
    acknowledged is applied before that stream's newer entries (a full run
    once applied the newer ones first: results out of order after a kill)."""
    from backend.ingester import Ingester
    from backend.redis_conn import connect

    f = fabric
    eid, tg, tids, stream, old = _held_by_old(f, 8)
    f.report(eid, tids[:4], per_entry=2)
    _, got = old.io.new(old.held, 10, 100)  # it reads two entries ... and is gone
    assert sum(len(items) for _, items in got) == 2
    f.report(eid, tids[4:], per_entry=2)  # two newer entries, unread
    f.r.delete(f"fx:ingester:lease:{eid}")
    f.r.zrem("fx:ingester:live", "host-a:1:1.00")
    new = Ingester(connect(f.url), consumer="host-b:2:2.00")
    new.refresh_streams()
    new.dirty = False  # a running ingester: its streams are known
    new.renew()  # as handle() renews in the middle of a batch: the lease is taken here
    assert new.held == [stream] and new.claimed == 0
    new.run_once()  # the next read: the previous holder's entries are claimed first
    assert new.claimed == 2
    until(lambda: f.all_done(tids), 30, "every result to be applied")
    assert f.events(tg) == tids
