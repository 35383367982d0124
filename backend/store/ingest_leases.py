"""Which ingester applies which endpoint's results: one lease per results stream.

Several ingesters share the results streams (``INGESTERS`` per service host,
and several hosts on one Redis).  Each endpoint's stream is applied by one
ingester at a time, so one endpoint's entries are never applied out of order
by two consumers, and the streams are shared out among the live ingesters:

* every ingester renews its membership of the live set
  (:data:`funcx.protocol.keys.INGEST_LIVE`, scored by when it lapses, on
  Redis's own clock, so hosts need not agree on the time) every third of
  ``INGEST_LEASE_S``;
* each endpoint is *meant* for the live ingester that rendezvous hashing picks
  (:func:`owner`): the streams spread evenly, and when an ingester comes or
  goes only its share moves;
* the meant ingester takes the endpoint's lease
  (:func:`funcx.protocol.keys.ingest_lease`: its consumer name, expiring after
  ``INGEST_LEASE_S``) once it is free, renews it while meant, and an ingester
  no longer meant gives it up (between its batches, so nothing is in flight);
* every write of results checks the lease in the same script (a fence,
  ``scripts.APPLY_RESULTS``): an ingester that lost its lease while paused or
  partitioned writes nothing; what it read stays pending and the holder
  claims it.

An ingester that dies loses its membership and leases after
``INGEST_LEASE_S``; one of this host whose process is gone, at once
(:meth:`Leases.tick`'s ``gone``); one that stops cleanly gives them up as it
goes (:meth:`Leases.leave`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

import redis

from backend.store import scripts
from funcx.protocol import keys


def weight(member: str, eid: str) -> bytes:
    """Rendezvous weight of ``member`` for endpoint ``eid``."""
    return hashlib.blake2b(f"{member}\n{eid}".encode(), digest_size=8).digest()


def owner(eid: str, members: Iterable[str]) -> str | None:
    """The live ingester meant to apply endpoint ``eid``'s results (the
    member of highest weight; None when there is none)."""
    best, best_w = None, b""
    for m in members:
        w = weight(m, eid)
        if best is None or w > best_w:
            best, best_w = m, w
    return best


class Leases:
    """One ingester's leases (as consumer ``me``), ``lease_s`` long."""

    def __init__(self, r: redis.Redis, me: str, lease_s: float):
        self.r, self.me = r, me
        self.lease_ms = max(1, int(lease_s * 1000))
        self._live = r.register_script(scripts.INGEST_LIVE)
        self._leases = r.register_script(scripts.INGEST_LEASES)

    def members(self, gone: Iterable[str] = ()) -> list[str]:
        """Renew this ingester's membership, drop ``gone`` ones and lapsed
        ones; the live ingesters (this one included)."""
        return list(self._live(keys=[keys.INGEST_LIVE],
                               args=[self.me, self.lease_ms, *gone]))

    def tick(self, eids: list[str], gone: Iterable[str] = ()) -> tuple[set[str], list[str]]:
        """Renew membership, then take, keep or give up each endpoint's lease
        as rendezvous hashing means it; ``gone``: ingesters known dead (their
        memberships end at once, and with them their leases).  Returns
        (endpoints held, live members)."""
        gone = list(gone)
        members = self.members(gone)
        if not eids:
            return set(), members
        flags = ["1" if owner(e, members) == self.me else "0" for e in eids]
        held = self._leases(keys=[keys.INGEST_LIVE, keys.ENDPOINTS,
                                  *[keys.ingest_lease(e) for e in eids]],
                            args=[self.me, self.lease_ms, *flags, *eids])
        return {e for e, h in zip(eids, held) if int(h)}, members

    def leave(self, eids: Iterable[str]) -> None:
        """Give up every lease this ingester holds and its membership (a
        clean stop: the others take its streams over at their next renewal)."""
        eids = list(eids)
        if eids:
            self._leases(keys=[keys.INGEST_LIVE, keys.ENDPOINTS,
                               *[keys.ingest_lease(e) for e in eids]],
                         args=[self.me, self.lease_ms, *["0"] * len(eids), *eids])
        self.r.zrem(keys.INGEST_LIVE, self.me)
