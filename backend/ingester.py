"""The result ingester: reads every endpoint's results stream as a consumer
group, applies results to task records (first terminal result wins), emits
task-group completion events, then acknowledges and deletes the entries.

Run as ``python -m backend.ingester`` (the supervisor does).
"""
from __future__ import annotations

import logging
import signal
import time

import redis

from backend.redis_conn import connect
from backend.store.endpoints import ensure_streams
from backend.store.tasks import TaskStore
from funcx.protocol import keys
from funcx.protocol.messages import ProtocolError
from funcx.protocol.streams import decode_result_entry

log = logging.getLogger("funcx.ingester")
READ_COUNT = 2000
BLOCK_MS = 1000


class Ingester:
    def __init__(self, r: redis.Redis):
        self.r = r
        self.store = TaskStore(r)
        self.running = True
        self.streams: list[str] = []
        self.dirty = True
        self.applied = 0

    def refresh_streams(self) -> None:
        try:
            self.r.xgroup_create(keys.INGEST_WAKE, keys.INGEST_GROUP, id="$", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        eids = sorted(self.r.smembers(keys.ENDPOINTS))
        for eid in eids:
            if keys.ep_results(eid) not in self.streams:
                ensure_streams(self.r, eid)
        self.streams = [keys.ep_results(e) for e in eids]

    def handle(self, batches) -> int:
        """Apply one XREADGROUP answer; return how many entries were handled.
        Each stream's results and their acknowledgement go in one round trip
        (the writes first, so a crash in between only means a re-apply, which
        the first-result-wins script ignores)."""
        handled = 0
        for stream, items in batches:
            entries = []
            ids = [entry_id for entry_id, _ in items]
            for entry_id, fields in items:
                if not fields:  # already deleted (seen when re-reading pending)
                    continue
                try:
                    entries.extend(decode_result_entry(fields))
                except ProtocolError as e:
                    log.error("dropping malformed result entry %s on %s: %s", entry_id, stream, e)
            if ids:
                self.applied += self.store.apply_results(entries, keys.endpoint_of(stream),
                                                         (stream, keys.INGEST_GROUP, ids))
            handled += len(ids)
        return handled

    def drain_pending(self) -> None:
        """Re-apply what a previous run read but did not acknowledge."""
        for stream in self.streams:
            while True:
                res = self.r.xreadgroup(keys.INGEST_GROUP, keys.INGEST_CONSUMER, {stream: "0"},
                                        count=READ_COUNT)
                if not res or not res[0][1] or self.handle(res) == 0:
                    break

    def run_once(self) -> int:
        """One blocking read over the wake stream and every results stream."""
        if self.dirty:
            self.refresh_streams()
            self.drain_pending()
            self.dirty = False
        # the wake stream rides along in the blocking read, so registering a new
        # endpoint interrupts the wait instead of waiting for the timeout
        streams = {keys.INGEST_WAKE: ">", **{s: ">" for s in self.streams}}
        res = self.r.xreadgroup(keys.INGEST_GROUP, keys.INGEST_CONSUMER, streams,
                                count=READ_COUNT, block=BLOCK_MS)
        if not res:
            return 0
        results = []
        for stream, items in res:
            if stream == keys.INGEST_WAKE:
                self.r.xack(stream, keys.INGEST_GROUP, *[i for i, _ in items])
                self.dirty = True
            else:
                results.append((stream, items))
        return self.handle(results)

    def run(self) -> None:
        backoff = 0.1
        while self.running:
            try:
                self.run_once()
                backoff = 0.1
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):  # a stream was deleted or Redis lost it
                    self.dirty = True
                    continue
                log.error("redis error: %s", e)
                time.sleep(backoff)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis unavailable (%s); retrying in %.1fs", type(e).__name__, backoff)
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
    log.info("ingester started")
    ing.run()
    log.info("ingester stopped after applying %d results", ing.applied)


if __name__ == "__main__":
    main()
