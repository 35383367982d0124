"""The ingester's reads of every endpoint's results stream (consumer group
``ingester``), and of the wake stream that says a new endpoint exists.

Results streams are written by endpoints, each a separate tenant, so they
are read with a client that does not decode replies: an entry's bytes reach
the ingester as they were written, and it decodes them one by one.
"""
from __future__ import annotations

import redis

from backend.redis_conn import raw_twin
from backend.store.endpoints import ensure_streams
from funcx.protocol import keys

#: one XREADGROUP answer: [(stream, [(entry id, {field: value}), ...]), ...] (bytes)
RawBatches = list


class ResultStreams:
    def __init__(self, r: redis.Redis):
        self.r = r  # decoded replies: the service's own keys
        self.raw = raw_twin(r)

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
        """Entries of ``stream`` read earlier and not acknowledged."""
        return self.raw.xreadgroup(keys.INGEST_GROUP, keys.INGEST_CONSUMER, {stream: "0"},
                                   count=count) or []

    def new(self, streams: list[str], count: int, block_ms: int) -> tuple[bool, RawBatches]:
        """New entries of ``streams`` (blocking up to ``block_ms``); the first
        value says whether the wake stream fired (a new endpoint exists)."""
        res = self.raw.xreadgroup(keys.INGEST_GROUP, keys.INGEST_CONSUMER,
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

    def ack(self, stream: str, ids: list[str]) -> None:
        """Acknowledge and delete entries of ``stream`` (after they were applied)."""
        with self.r.pipeline(transaction=True) as p:
            p.xack(stream, keys.INGEST_GROUP, *ids)
            p.xdel(stream, *ids)
            p.execute()
