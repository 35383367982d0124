"""Slots for result long-polls, so that waiting requests cannot take every
request thread of the web tier (DESIGN decision 8).

Two bounds:

* per identity, across every web process: at most ``LONGPOLL_PER_IDENTITY``
  long-polls open at once, counted in Redis as a sorted set of poll ids scored
  by their deadline (:func:`funcx.protocol.keys.longpolls`), so the entries of
  a web process that died mid-poll stop counting when their deadline passes;
* per web process: at most ``WEB_LONGPOLL_THREADS`` of its request threads wait
  at once (a semaphore in the process: the threads it bounds are its own).
"""
from __future__ import annotations

import threading
import time
import uuid

import redis

from backend.store import scripts
from funcx.defaults import setting
from funcx.protocol import keys

SLACK_S = 10.0  # a poll's entry outlives its deadline by this much (clock skew, slow answers)

_threads: threading.BoundedSemaphore | None = None
_threads_lock = threading.Lock()


def process_bound() -> int:
    """Long-polls one web process lets wait at once: ``WEB_LONGPOLL_THREADS``,
    and always at least 2 fewer than its request threads."""
    threads = int(setting("WEB_THREADS"))
    return max(1, min(int(setting("WEB_LONGPOLL_THREADS")), threads - 2))


def _semaphore() -> threading.BoundedSemaphore:
    global _threads
    with _threads_lock:
        if _threads is None:
            _threads = threading.BoundedSemaphore(process_bound())
        return _threads


class Slot:
    """One long-poll's place: ``taken`` says whether it may wait; release it when done."""

    def __init__(self, r: redis.Redis, identity: str, wait_s: float):
        self.r, self.key, self.id = r, keys.longpolls(identity), uuid.uuid4().hex
        self.thread = False
        self.taken = False
        now = time.time()
        cap = int(setting("LONGPOLL_PER_IDENTITY"))
        script = r.register_script(scripts.LONGPOLL_ACQUIRE)
        if not script(keys=[self.key], args=[self.id, now, now + wait_s + SLACK_S, cap]):
            return  # over the identity's cap: the caller answers 429
        self.taken = True
        self.thread = _semaphore().acquire(blocking=False)

    def release(self) -> None:
        if self.thread:
            _semaphore().release()
            self.thread = False
        if self.taken:
            self.taken = False
            try:
                self.r.zrem(self.key, self.id)
            except redis.RedisError:  # its deadline retires it
                pass


def open_polls(r: redis.Redis, identity: str) -> int:
    """How many long-polls ``identity`` holds open now."""
    return int(r.zcount(keys.longpolls(identity), time.time(), "+inf"))
