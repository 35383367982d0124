"""The ingester's reads of every endpoint's results stream (consumer group
``ingester``), and of the wake stream that says a new endpoint exists.

Results streams are written by endpoints, each a separate tenant, so they
are read with a client that does not decode replies: an entry's bytes reach
the ingester as they were written, and it decodes them one by one.

Several ingesters (``INGESTERS`` per service host, and several hosts, all on
one Redis) share the group, each under its own consumer name
(:func:`consumer_name`: host, pid, start time).  Each endpoint's stream is read
only by the ingester holding its lease (backend/store/ingest_leases.py); what
another consumer read and never acknowledged (a dead or paused one) stays in
its pending list until the holder claims it (:meth:`ResultStreams.held_by_others`,
:meth:`ResultStreams.claim_from`).  Each ingester's read of its own pending wake
entries (:meth:`ResultStreams.heartbeat`) keeps its idle time in the wake
stream's group near zero: that is how a consumer long gone is told from a live one
(:meth:`ResultStreams.forget`).
"""
from __future__ import annotations

import os
import socket

import psutil
import redis

from backend.redis_conn import raw_twin
from backend.store.endpoints import ensure_streams
from funcx.lifecycle import ProcessRecord
from funcx.protocol import keys

#: one XREADGROUP answer: [(stream, [(entry id, {field: value}), ...]), ...] (bytes)
RawBatches = list

#: a consumer of the group on one stream: name, entries pending, ms since it last read
Consumer = tuple[str, int, int]


def consumer_name(pid: int | None = None) -> str:
    """This process's consumer name (or process ``pid``'s, on this host)."""
    pid = pid or os.getpid()
    return keys.ingest_consumer(socket.gethostname(), pid, psutil.Process(pid).create_time())


def gone_from_this_host(name: str) -> bool:
    """Whether ``name`` is an ingester of this host whose process no longer
    runs (its pid gone, or reused by another process): its entries can be
    claimed at once, without waiting for them to look idle."""
    origin = keys.ingest_consumer_origin(name)
    if origin is None or origin[0] != socket.gethostname():
        return False
    return ProcessRecord(origin[1], origin[2]).process() is None


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


class ResultStreams:
    """One ingester's view of the results streams, as consumer ``consumer``."""

    def __init__(self, r: redis.Redis, consumer: str | None = None):
        self.r = r  # decoded replies: the service's own keys
        self.raw = raw_twin(r)
        self.consumer = consumer or consumer_name()

    def streams(self, known: list[str]) -> list[str]:
        """Every endpoint's results stream, each with its consumer group (created
        for streams not in ``known``), and the wake stream's group."""
        try:
            self.r.xgroup_create(keys.INGEST_WAKE, keys.INGEST_GROUP, id="$", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        eids = sorted(self.r.smembers(keys.ENDPOINTS))
        for eid in eids:
            if keys.ep_results(eid) not in known:
                ensure_streams(self.r, eid)
        return [keys.ep_results(e) for e in eids]

    def pending(self, stream: str, count: int) -> RawBatches:
        """Entries of ``stream`` this consumer read (or claimed) and did not acknowledge."""
        return self.raw.xreadgroup(keys.INGEST_GROUP, self.consumer, {stream: "0"},
                                   count=count) or []

    def new(self, streams: list[str], count: int, block_ms: int) -> tuple[bool, RawBatches]:
        """New entries of ``streams`` (blocking up to ``block_ms``); the first
        value says whether the wake stream fired (a new endpoint exists)."""
        res = self.raw.xreadgroup(keys.INGEST_GROUP, self.consumer,
                                  {keys.INGEST_WAKE: ">", **{s: ">" for s in streams}},
                                  count=count, block=block_ms) or []
        wake, out = keys.INGEST_WAKE.encode(), []
        woke = False
        for stream, items in res:
            if stream == wake:
                self.r.xack(keys.INGEST_WAKE, keys.INGEST_GROUP, *[i for i, _ in items])
                woke = True
            else:
                out.append((stream, items))
        return woke, out

    def heartbeat(self) -> str | None:
        """Say this ingester is alive (a read of its own pending wake entries
        resets its idle time there, which an empty blocking read does not) and
        return the wake stream's last entry id: one that changed means an
        endpoint registered, whichever ingester the wake entry went to."""
        with self.r.pipeline(transaction=False) as p:
            p.xreadgroup(keys.INGEST_GROUP, self.consumer, {keys.INGEST_WAKE: "0"}, count=100)
            p.xrevrange(keys.INGEST_WAKE, count=1)
            mine, last = p.execute()
        stale = [i for _, items in (mine or []) for i, _ in items]
        if stale:  # read by this consumer and never acknowledged (it stopped in between)
            self.r.xack(keys.INGEST_WAKE, keys.INGEST_GROUP, *stale)
        return last[0][0] if last else None

    def ingesters(self) -> dict[str, int]:
        """Every ingester the wake stream's group knows: name -> ms since it
        last showed it was alive (:meth:`heartbeat`)."""
        return {name: idle for name, _, idle in self.consumers([keys.INGEST_WAKE])
                .get(keys.INGEST_WAKE, [])}

    def consumers(self, streams: list[str]) -> dict[str, list[Consumer]]:
        """The group's consumers on each of ``streams`` (a stream without the
        group is left out)."""
        with self.r.pipeline(transaction=False) as p:
            for s in streams:
                p.xinfo_consumers(s, keys.INGEST_GROUP)
            answers = p.execute(raise_on_error=False)
        out: dict[str, list[Consumer]] = {}
        for s, ans in zip(streams, answers):
            if isinstance(ans, Exception):
                continue  # NOGROUP: the stream is gone (an endpoint was deleted)
            out[s] = [(_text(c["name"]), int(c["pending"]), int(c["idle"])) for c in ans]
        return out

    def held_by_others(self, streams: list[str]) -> dict[str, list[str]]:
        """For each of ``streams`` with entries read and not acknowledged,
        the consumers holding them (this one included), in one round trip."""
        with self.r.pipeline(transaction=False) as p:
            for s in streams:
                p.xpending(s, keys.INGEST_GROUP)
            answers = p.execute(raise_on_error=False)
        out: dict[str, list[str]] = {}
        for s, ans in zip(streams, answers):
            if isinstance(ans, Exception) or not ans or not ans.get("pending"):
                continue  # NOGROUP (the stream is gone) or nothing pending
            out[s] = [_text(c["name"]) for c in ans.get("consumers") or [] if int(c["pending"])]
        return out

    def claim_from(self, stream: str, consumer: str, count: int) -> int:
        """Claim at once every entry ``consumer`` (a dead ingester) holds on
        ``stream``; return how many."""
        claimed = 0
        while True:
            ids = [e["message_id"] for e in self.r.xpending_range(
                stream, keys.INGEST_GROUP, "-", "+", count, consumername=consumer)]
            if not ids:
                return claimed
            got = self.r.xclaim(stream, keys.INGEST_GROUP, self.consumer, 0, ids, justid=True)
            if stream == keys.INGEST_WAKE and got:
                self.r.xack(stream, keys.INGEST_GROUP, *got)
            claimed += len(ids)

    def forget(self, stream: str, consumer: str) -> RawBatches:
        """Remove ``consumer`` (a dead ingester with nothing pending) from the
        group on ``stream``.  Its pending list is read in the same transaction:
        should it have read entries since it was judged dead, they come back
        here (raw, as :meth:`new` gives them) to be applied, not lost."""
        with self.r.pipeline(transaction=True) as p:
            p.xpending_range(stream, keys.INGEST_GROUP, "-", "+", 10_000, consumername=consumer)
            p.xgroup_delconsumer(stream, keys.INGEST_GROUP, consumer)
            held, _ = p.execute()
        ids = [e["message_id"] for e in held]
        if not ids or stream == keys.INGEST_WAKE:
            return []
        with self.raw.pipeline(transaction=False) as p:
            for i in ids:
                p.xrange(stream, i, i)
            found = [item for rows in p.execute() for item in rows]
        return [(stream.encode(), found)] if found else []

    @staticmethod
    def wake_stream() -> str:
        """The wake stream's name (its group's consumers are the live ingesters)."""
        return keys.INGEST_WAKE
