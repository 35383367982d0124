"""The result ingester: reads every endpoint's results stream as a consumer
group, applies results to task records (first terminal result wins, only to
tasks of the endpoint whose stream carried them), emits task-group completion
events, then acknowledges and deletes the entries.

Each results stream is written by a different tenant (an endpoint, with its
own Redis credentials), so nothing read from it is trusted (DESIGN decision
8): entries are read as raw bytes and decoded one by one through their
schema; an entry that does not decode, or a result for a task that is not
that endpoint's, is refused alone — logged with its origin and recorded in
the dead-letter stream — and never stops the loop.

Several ingesters run at once: ``INGESTERS`` per service host, and several
hosts on one Redis (DESIGN decision 9).  Each reads the consumer group under
its own consumer name (host, pid, start time), and each endpoint's results
stream is read and applied by one of them at a time, the holder of its lease
(backend/store/ingest_leases.py): the endpoints are shared out by rendezvous
hashing over the live ingesters, and every write checks the lease in its
script, so one endpoint's entries are never applied by two ingesters at once,
nor out of order.  Every third of ``INGEST_LEASE_S`` an ingester renews its
membership and leases (:meth:`Ingester.tick`), then claims what another
consumer read of its streams and never acknowledged (a dead one's) and applies
that before anything newer.  A dead ingester's streams move when its leases
lapse (``INGEST_LEASE_S``; one of this host whose process is gone: at once);
one that stops cleanly hands them over as it goes.  The results script's
first-terminal-result-wins makes a second application of the same entry
(after a crash between apply and acknowledgement) change nothing, so each
result is applied exactly once.  A consumer that has shown no sign of life for
``INGEST_CONSUMER_EXPIRE_S`` and holds nothing is removed.

Run as ``python -m backend.ingester`` (the supervisor does).
"""
from __future__ import annotations

import logging
import signal
import time
from typing import Any

import redis

from backend.redis_conn import connect
from backend.store import blobs, deadletters
from backend.store.ingest_leases import Leases
from backend.store.result_streams import ResultStreams, gone_from_this_host
from backend.store.results import ResultStore
from funcx.defaults import setting
from funcx.errors import MaxResultSizeExceeded
from funcx.protocol import keys
from funcx.protocol.messages import ProtocolError, Result, StatusUpdate
from funcx.protocol.output_limits import fit, utf8_size
from funcx.protocol.states import TaskState
from funcx.protocol.streams import decode_result_entry
from funcx.sdk.limits import serialized_bytes
from funcx.serialize import binary

log = logging.getLogger("funcx.ingester")


def _text(fields: Any) -> dict[str, str]:
    """A raw entry's field map as text; ProtocolError if it is not UTF-8."""
    try:
        return {k.decode(): v.decode() for k, v in fields.items()}
    except (UnicodeDecodeError, AttributeError) as e:
        raise ProtocolError(f"entry is not UTF-8 text: {e}") from None


def _data_bytes(data: str, blob: bool) -> int:
    """Bytes of data a result carries: a blob result's reference names its
    size once it was moved (``blobs.settle``), else the serialized text's
    data as decoded."""
    if blob:
        name = data[len(binary.REF_PREFIX):]
        if name.isdigit():
            return int(name)
    return serialized_bytes(data)


def _bounded(e: Result | StatusUpdate, limit: int) -> Result | StatusUpdate:
    """A result larger than the service keeps becomes a failure saying so; its
    captured output is cut to what the result leaves of ``limit`` (output
    never makes a result too large) and kept either way."""
    if not isinstance(e, Result):
        return e
    blob = binary.is_ref(e.data)
    if not blob and len(e.data) + len(e.exc_data) + len(e.stdout) + len(e.stderr) <= limit // 4:
        return e  # far within the limit however it is counted (4 bytes a character at most)
    size = _data_bytes(e.data, blob) + utf8_size(e.exc_data)  # the result's data as decoded
    if size > limit:
        err = MaxResultSizeExceeded(size, limit)
        e = Result(e.task_id, TaskState.FAILED.value, data=f"{type(err).__name__}: {err}",
                   completion_t=e.completion_t, details={"reason": "result too large"},
                   stdout=e.stdout, stderr=e.stderr)
        size = utf8_size(e.data)
    output = fit({"stdout": e.stdout, "stderr": e.stderr}, limit - size)
    e.stdout, e.stderr = output["stdout"], output["stderr"]
    return e


class Ingester:
    """One ingester: reads as consumer ``consumer`` (default: this process's
    own name, host:pid:start time) and applies what it reads."""

    def __init__(self, r: redis.Redis, consumer: str | None = None):
        self.r = r
        self.io = ResultStreams(r, consumer)
        self.consumer = self.io.consumer
        self.results = ResultStore(r)
        self.running = True
        self.streams: list[str] = []  # every endpoint's results stream
        self.held: list[str] = []  # those whose lease this ingester holds (it reads only these)
        self.dirty = True
        self.applied = 0
        self.refused = 0
        self.claimed = 0  # entries taken over from other (dead or paused) ingesters
        self.max_result = int(setting("MAX_RESULT_BYTES"))
        self.read_count = int(setting("INGEST_READ_COUNT"))
        self.lease_s = float(setting("INGEST_LEASE_S"))
        self.leases = Leases(r, self.consumer, self.lease_s)
        # a read never outlasts a third of the lease: the lease is renewed in time
        self.block_ms = max(1, min(int(setting("INGEST_BLOCK_MS")), int(self.lease_s * 1000 / 3)))
        self.expire_s = float(setting("INGEST_CONSUMER_EXPIRE_S"))
        self._wake_mark: str | None = None
        self._gone: set[str] = set()
        self._next_heartbeat = 0.0
        self._next_tick = 0.0
        self._next_forget = 0.0

    def refresh_streams(self) -> None:
        self.streams = self.io.streams(self.streams)

    # ------------------------------------------------------- several ingesters
    def heartbeat(self) -> None:
        """Show the other ingesters this one is alive; a wake entry another
        ingester took (an endpoint registered) makes this one refresh too."""
        try:
            mark = self.io.heartbeat()
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            self.dirty = True  # the wake stream's group is made by the refresh
            return
        if mark != self._wake_mark:
            self._wake_mark = mark
            self.dirty = True

    def tick(self) -> None:
        """Renew membership and leases (rendezvous hashing says which
        endpoints are this ingester's); then, on every stream held, claim and
        apply what another consumer read and never acknowledged, before
        anything newer is read.  An ingester of this host whose process is
        gone loses its membership and leases at once."""
        self.renew()
        self.take_over(self.held)

    def renew(self) -> None:
        """Renew membership and leases; :attr:`held` becomes the streams
        whose lease this ingester holds now.  A stream taken here is read
        only after :meth:`tick` has claimed what its previous holder left:
        renewing in the middle of a long batch (:meth:`handle`) asks for a
        tick before the next read, or the stream's newer entries would be
        applied before the older ones the previous holder read."""
        self._next_tick = time.monotonic() + self.lease_s / 3
        stream_of = {keys.endpoint_of(s): s for s in self.streams}
        eids = list(stream_of)
        for _ in range(2):  # again at once when a dead neighbour was just found
            held, members = self.leases.tick(eids, self._gone)
            gone = {m for m in members if m != self.consumer and gone_from_this_host(m)}
            found = gone - self._gone
            self._gone = gone
            if not found:
                break
            log.info("ingesters %s of this host are gone: taking their streams over",
                     ", ".join(sorted(found)))
        before = set(self.held)
        self.held = [stream_of[e] for e in eids if e in held]
        taken = [s for s in self.held if s not in before]
        if taken:
            log.info("now applying the results of %d more endpoint(s) (%d in all; %d ingester(s) "
                     "live)", len(taken), len(self.held), len(members))
            self._next_tick = 0.0  # claim before reading (a tick does, at the next maintain)

    def take_over(self, streams: list[str]) -> int:
        """Claim every entry of ``streams`` (held by this ingester) that another
        consumer read and never acknowledged, and apply what this one holds
        unacknowledged, oldest first; return how many entries were claimed."""
        n = 0
        for stream, holders in self.io.held_by_others(streams).items():
            for name in holders:
                if name != self.consumer:
                    got = self.io.claim_from(stream, name, self.read_count)
                    n += got
                    log.info("claimed %d entries of %s that %s held", got, stream, name)
            self.drain_pending([stream])
        self.claimed += n
        return n

    def forget_dead(self) -> int:
        """Remove consumers that have shown no sign of life (:meth:`heartbeat`)
        for INGEST_CONSUMER_EXPIRE_S and hold nothing; return how many."""
        expire_ms = self.expire_s * 1000
        alive = self.io.ingesters()  # name -> ms since its last heartbeat
        removed = 0
        wake = self.io.wake_stream()
        # the holder of a stream's lease is the one that claims, and forgets, there
        for stream, consumers in self.io.consumers([wake, *self.held]).items():
            for name, pending, idle in consumers:
                # (what it holds of the wake stream is a hint only: dropped with it)
                if name == self.consumer or (pending and stream != wake):
                    continue
                if min(alive.get(name, idle), idle) < expire_ms:
                    continue
                rescued = self.io.forget(stream, name)
                removed += 1
                if rescued:  # it read them after all: apply them here, nothing is lost
                    self.handle(rescued)
        if removed:
            log.info("removed %d consumer entries of ingesters gone for over %gs",
                     removed, self.expire_s)
        return removed

    def maintain(self, now: float) -> None:
        """Heartbeat every read; leases every third of INGEST_LEASE_S; forget
        long-gone consumers every INGEST_LEASE_S (at least every 30 s)."""
        if now >= self._next_heartbeat:
            self.heartbeat()
            self._next_heartbeat = now + self.block_ms / 1000
        if now >= self._next_tick:
            self.tick()
        if now >= self._next_forget:
            self._next_forget = now + max(0.1, min(self.lease_s, 30.0))
            self.forget_dead()

    def leave(self) -> None:
        """Hand this ingester's streams over at once (a clean stop)."""
        try:
            self.leases.leave([keys.endpoint_of(s) for s in self.held])
        except redis.RedisError as e:  # they lapse by themselves
            log.warning("could not give the leases up (%s); they lapse after %gs",
                        type(e).__name__, self.lease_s)
        self.held = []

    def _refuse(self, eid: str, stream: str, entry_id: str, reason: str, fields: Any = None) -> None:
        self.refused += 1
        log.warning("refused from endpoint %s (%s entry %s): %s", eid, stream, entry_id, reason)
        try:
            deadletters.add(self.r, f"endpoint:{eid}", reason, stream=stream, entry_id=entry_id,
                            fields=fields)
        except redis.RedisError as e:  # the refusal stands even if it cannot be recorded
            log.error("cannot record a dead letter: %s", type(e).__name__)

    def handle(self, batches: list) -> int:
        """Apply one XREADGROUP answer (raw); return how many entries were handled.
        Each stream's results and their acknowledgement go in one round trip."""
        handled = 0
        limit = self.max_result
        for raw_stream, items in batches:
            stream = raw_stream.decode() if isinstance(raw_stream, bytes) else raw_stream
            eid = keys.endpoint_of(stream)
            entries: list[Result | StatusUpdate] = []
            ids: list[str] = []
            for raw_id, fields in items:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                ids.append(entry_id)
                if not fields:  # already deleted (seen when re-reading pending)
                    continue
                try:
                    entries += decode_result_entry(_text(fields))
                except Exception as e:  # noqa: BLE001 - any bad entry is refused alone
                    self._refuse(eid, stream, entry_id, str(e)[:500], fields)
            if ids:
                # blob results: moved out of the endpoint's reach, or failed (backend/store/blobs.py);
                # then each result bounded, a blob's by the size its reference now names
                entries = [_bounded(e, limit)
                           for e in blobs.settle(self.r, eid, entries, self.max_result)]
                self._apply(eid, stream, entries, ids)
            handled += len(ids)
            if time.monotonic() >= self._next_tick:  # a long batch: keep the leases
                self.renew()
        return handled

    def _apply(self, eid: str, stream: str, entries: list, ids: list[str]) -> None:
        ack = (stream, keys.INGEST_GROUP, ids)
        try:
            done = self.results.apply(entries, eid, ack, holder=self.consumer)
        except redis.ResponseError as e:
            if "OOM" in str(e) or "NOGROUP" in str(e) or "NOSCRIPT" in str(e):
                raise  # the store's state, not the entries: retried by run()
            # a script error from one entry: apply one at a time, refuse what fails
            log.error("batch from endpoint %s failed (%s); applying one by one", eid, e)
            for item in entries:
                try:
                    done = self.results.apply([item], eid, holder=self.consumer)
                except redis.ResponseError as one:
                    self._refuse(eid, stream, "", f"could not be applied: {one}",
                                 {"task_id": getattr(item, "task_id", "")})
                    continue
                if done.fenced:
                    return self._lost(eid, stream)
                self._report(eid, stream, done)
            if not self.results.ack(stream, ids, eid, self.consumer):
                self._lost(eid, stream)
            return
        if done.fenced:
            self._report(eid, stream, done)
            self._lost(eid, stream)
            return
        self._report(eid, stream, done)

    def _lost(self, eid: str, stream: str) -> None:
        """The endpoint's lease went to another ingester (this one was paused
        or cut off): stop reading the stream; what this one read stays pending
        for the holder, who claims it."""
        log.warning("the lease of endpoint %s went to another ingester: its results are "
                    "left to it", eid)
        self.held = [s for s in self.held if s != stream]
        self._next_tick = 0.0

    def _report(self, eid: str, stream: str, done) -> None:
        self.applied += done.applied
        for tid, reason in done.refused:
            self._refuse(eid, stream, "", reason, {"task_id": tid})

    def drain_pending(self, streams: list[str] | None = None) -> None:
        """Re-apply what this consumer read (or claimed) but did not acknowledge."""
        for stream in self.held if streams is None else streams:
            while stream in self.held:
                res = self.io.pending(stream, self.read_count)
                if not res or not res[0][1] or self.handle(res) == 0:
                    break

    def run_once(self) -> int:
        """One blocking read over the wake stream and the results streams this
        ingester holds (after the periodic work of :meth:`maintain`, when due)."""
        if self.dirty:
            self.refresh_streams()
            self._next_tick = 0.0  # leases for new streams at once
            self.dirty = False
        self.maintain(time.monotonic())
        # the wake stream rides along in the blocking read, so registering a new
        # endpoint interrupts the wait instead of waiting for the timeout
        woke, results = self.io.new(self.held, self.read_count, self.block_ms)
        if woke:
            self.dirty = True
        return self.handle(results)

    def run(self) -> None:
        """Loop until stopped; no error, from Redis or from an entry, ends it."""
        backoff = 0.1
        while self.running:
            try:
                self.run_once()
                backoff = 0.1
                continue
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):  # a stream was deleted or Redis lost it
                    self.dirty = True
                    continue
                log.error("redis error: %s", e)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis unavailable (%s); retrying in %.1fs", type(e).__name__, backoff)
            except Exception:  # noqa: BLE001 - a bug must not stop everyone's results
                log.exception("ingester error; retrying in %.1fs", backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            self.dirty = True


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ing = Ingester(connect())

    def _stop(*_):
        ing.running = False

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("ingester %s started", ing.consumer)
    ing.run()
    ing.leave()
    log.info("ingester %s stopped after applying %d results (%d refused, %d entries claimed "
             "from other ingesters)", ing.consumer, ing.applied, ing.refused, ing.claimed)


if __name__ == "__main__":
    main()
