"""A manager's link to the interchange (issue 15, "links that come back"):
its DEALER socket and handshake monitor, registering (again), heartbeats,
sending results and keeping each until acknowledged, and reconnecting while
the interchange is silent.  A part of :class:`endpoint.manager.Manager`
(which holds the state named below), kept apart to keep modules small."""
from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections import deque
from typing import TYPE_CHECKING

import zmq

from endpoint import blobs
from endpoint.hardware_report import available_memory
from endpoint.local_socket import is_local_url
from endpoint.unacked import MAX_UNACKED, Unacked
from funcx.lifecycle import supervisor_alive
from funcx.protocol.messages import MAX_HELD, Kind, Register, Result, Task, pack, pack_results

if TYPE_CHECKING:
    from endpoint.curve import ManagerKeys
    from endpoint.launch import ManagerLaunch
    from endpoint.worker_pool import WorkerSlot
    from funcx.protocol.hardware import NodeHardware

log = logging.getLogger("funcx.manager")

SUPERVISOR_CHECK_S = 0.5  #: how often a manager checks that its endpoint daemon lives


class InterchangeLink:
    """The interchange side of a manager (see the module docstring)."""

    launch: ManagerLaunch
    id: str
    block_id: str
    keys: ManagerKeys
    ctx: zmq.Context
    poller: zmq.Poller | None
    up: zmq.Socket
    mon: zmq.Socket
    handshakes: int
    n_workers: int
    prefetch: int
    hand_started: bool
    hardware: NodeHardware | None
    period: float
    threshold: float
    reconnect_max: float
    supervisor: str | None
    last_supervisor_check: float
    slots: list[WorkerSlot]
    pending: deque[Task]
    results: list[Result]
    unacked: Unacked
    sent: int
    stopping: bool
    last_heard: float
    last_beat: float
    last_register: float
    reconnects: int
    silent_since: float | None
    next_reconnect: float
    backoff: float

    def _connect(self) -> tuple[zmq.Socket, zmq.Socket]:
        """A fresh DEALER to the interchange (this manager's id, its CURVE keys)
        and a monitor of its handshakes, both polled when the loop runs."""
        up = self.ctx.socket(zmq.DEALER)
        up.setsockopt(zmq.IDENTITY, self.id.encode())
        up.setsockopt(zmq.LINGER, 2000)
        up.ipv6 = True  # the interchange may listen on an IPv6 address
        # a connect attempt into a cut link gives up soon and is tried again
        # (every 100 ms), instead of waiting out TCP's SYN back-off: a link that
        # comes back is used within seconds (the interchange holds a lost
        # manager's tasks for one threshold)
        up.setsockopt(zmq.CONNECT_TIMEOUT, max(100, int(min(self.threshold / 2, 5.0) * 1000)))
        if not is_local_url(self.launch.addr):  # the Unix socket: no CURVE (local_socket)
            self.keys.apply(up)
        mon = up.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        up.connect(self.launch.addr)
        if self.poller is not None:
            self.poller.register(up, zmq.POLLIN)
            self.poller.register(mon, zmq.POLLIN)
        return up, mon

    def _close_up(self, linger: int) -> None:
        if self.poller is not None:
            self.poller.unregister(self.up)
            self.poller.unregister(self.mon)
        self.up.disable_monitor()
        self.mon.close(linger=0)
        self.up.close(linger=linger)

    def on_handshake(self) -> None:
        """The connection to the interchange was (re-)established.  The first
        handshake of a socket carries the REGISTER queued when it was made; a
        later one means the interchange went away and came back (a restart, a
        dropped TCP connection): register again on it at once."""
        while int(self.mon.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self.mon.recv_multipart()
            self.handshakes += 1
            if self.handshakes > 1:
                log.warning("reconnected to the interchange at %s; registering again",
                            self.launch.addr)
                self.register_again()

    def send_up(self, frames: list[bytes]) -> bool:
        """Send to the interchange without blocking; False when the connection's
        queue is full (a long outage): the caller keeps what it could not send."""
        try:
            blobs.send(self.up, frames, zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def send_results(self, results: list[Result]) -> bool:
        """Send ``results`` and keep each, numbered, until it is acknowledged
        (False: not sent; the caller keeps them)."""
        if not self.send_up(pack_results(results)):
            return False
        over = 0
        for r in results:
            self.sent += 1
            over += self.unacked.add(self.sent, r)
        if over:
            log.warning("the interchange has not acknowledged %d results; forgetting the "
                        "oldest %d (a reconnect will not send them again)", MAX_UNACKED, over)
        return True

    def acknowledged(self, count: int) -> None:
        """The interchange received the first ``count`` results sent: forget them."""
        self.unacked.acknowledged(count)

    def held_ids(self) -> set[str]:
        """Tasks this manager holds: running, queued here, or finished with a
        result not known to be delivered."""
        held = {s.task.task_id for s in self.slots if s.task is not None}
        held.update(t.task_id for t in self.pending)
        held.update(r.task_id for r in self.results)
        held.update(r.task_id for _, r in self.unacked)
        return held

    def reconnect(self) -> None:
        """Replace the connection to the interchange and register again."""
        self.reconnects += 1
        self._close_up(linger=0)  # what it still queues is resent by register_again
        self.up, self.mon = self._connect()
        self.handshakes = 0
        self.register_again()

    def register_again(self) -> None:
        """Register, naming what it holds; then send again the results the
        interchange has not acknowledged (after the REGISTER, so they count)."""
        self.register()
        again = [r for _, r in self.unacked]
        log.info("registered again with %d task(s) held; sending %d unacknowledged result(s) "
                 "again", len(self.held_ids()), len(again))
        self.unacked.clear()
        if again and not self.send_results(again):
            self.results[:0] = again  # sent with the next flush
        self.last_beat = time.monotonic()

    def heartbeat(self) -> None:
        now = time.monotonic()
        if now - self.last_beat >= self.period:
            self.send_up(pack(Kind.HEARTBEAT, {  # one lost in an outage does not matter
                "t": time.time(), "containers": sorted({s.container for s in self.slots}),
                "memory_available": available_memory()}))
            self.last_beat = now
        if now - self.last_heard > self.threshold and now >= self.next_reconnect:
            if self.silent_since is None:
                self.silent_since = self.last_heard
            log.warning("no word from the interchange at %s for %.1fs; reconnecting (try %d, "
                        "holding %d task(s) and %d unacknowledged result(s))",
                        self.launch.addr, now - self.silent_since, self.reconnects + 1,
                        len(self.held_ids()), len(self.unacked))
            self.reconnect()
            self.next_reconnect = now + self.backoff
            self.backoff = min(self.backoff * 2, self.reconnect_max)
        if self.supervisor and now - self.last_supervisor_check >= SUPERVISOR_CHECK_S:
            self.last_supervisor_check = now
            if not supervisor_alive(self.supervisor):
                log.error("the endpoint daemon that started this block (%s) is gone; exiting",
                          self.supervisor)
                self.up.setsockopt(zmq.LINGER, 0)  # nobody is left to deliver to
                self.stopping = True

    def register(self) -> None:
        """(Re-)register: who it is, what it can hold, what it holds now, and
        the number its next result gets less one (the interchange counts from it)."""
        held = sorted(self.held_ids())[:MAX_HELD]
        self.last_register = time.monotonic()
        self.up.send_multipart(pack(Kind.REGISTER, Register(
            manager_id=self.id, block_id=self.block_id, hostname=socket.gethostname(),
            workers=self.n_workers, capacity=self.n_workers + self.prefetch,
            pid=os.getpid(), python=sys.version.split()[0], held=held,
            results_base=self.sent, hand_started=self.hand_started, hardware=self.hardware)))
