"""The interchange: a ZeroMQ ROUTER that managers connect to.  It receives
tasks from the agent's Redis reader, hands them to managers by credit, and
passes results and status changes back to the agent's writer.

Its loop runs in one thread and owns every socket it uses; other threads
hand it tasks with :meth:`submit` (an in-process queue plus a wake-up byte on
an inproc socket: tasks are not serialized to cross threads).

Managers are a separate tenant (DESIGN decision 8) and are distrusted:

* the ROUTER is a CurveZMQ server that accepts, through a ZAP handler, only
  the endpoint's manager key (:mod:`endpoint.curve`); any other client —
  no CURVE at all, or another keypair — is refused at the handshake;
* it binds exactly the configured address (``0.0.0.0`` only when that is what
  the owner configured), never every interface behind the owner's back;
* every message is decoded through its schema in :mod:`funcx.protocol.messages`
  and handled alone: an exception from one message is logged with its origin
  (manager id, hostname) and dropped, and the loop carries on;
* a result (or a "running" notice) is accepted only for a task dispatched to
  the manager that sends it; the rest are counted in ``stats`` and logged
  with the manager id, never with their payloads.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from endpoint.curve import CurveKeys
from endpoint.scheduling import ManagerState, assign, lost_manager_tasks
from funcx.errors import FuncxError
from funcx.protocol.messages import (Kind, ProtocolError, StatusUpdate, Task, pack, pack_tasks,
                                     unpack, unpack_results)
from funcx.protocol.states import TaskState

log = logging.getLogger("funcx.interchange")
FEED_ADDR = "inproc://funcx-tasks"
WILDCARDS = ("0.0.0.0", "*")  # every interface: only when configured exactly so


class InterchangeAddressError(FuncxError):
    """The configured interchange address is not one this host can listen on."""


def bind_address(address: str) -> str:
    """The IP to bind for the configured ``address``: the address itself when
    it is an IP, the resolved IP of a host name, ``0.0.0.0`` only for a
    configured wildcard."""
    if address in WILDCARDS:
        return "0.0.0.0"
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    try:
        return socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)[0][4][0]
    except (socket.gaierror, IndexError, UnicodeError) as e:
        raise InterchangeAddressError(
            f"interchange address {address!r} does not resolve ({e}); set `address` in the "
            f"endpoint config to an address of this host") from None


def _tcp(host: str, port: int | str) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


class Interchange:
    def __init__(self, address: str, port: int, on_output: Callable[[list], None],
                 heartbeat_period: float, heartbeat_threshold: float, max_retries: int,
                 poll_period: float = 0.1, *, key_dir: str | os.PathLike):
        """Listen on ``address:port`` (port 0: any free one) for managers holding
        the manager key kept in ``key_dir`` (made there on first start)."""
        self.keys = CurveKeys.load_or_create(Path(key_dir))
        self.ctx = zmq.Context()  # its own: one ZAP handler per context
        self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("funcx.interchange.zap"))
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(self.keys.authorized_dir))
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.keys.apply_server(self.router)
        host = bind_address(address)
        if ":" in host:
            self.router.ipv6 = True
        try:
            if port:
                self.router.bind(_tcp(host, port))
            else:
                port = self.router.bind_to_random_port(
                    f"tcp://[{host}]" if ":" in host else f"tcp://{host}")
        except zmq.ZMQError as e:
            self.router.close()
            self.auth.stop()
            raise InterchangeAddressError(
                f"the interchange cannot listen on {address!r} port {port or 'any'} ({e}); "
                f"set `address` in the endpoint config to an address of this host") from None
        self.port = port
        self.bound = host
        if address in WILDCARDS:
            address = socket.gethostbyname(socket.gethostname())
        self.address = address
        self.feed = self.ctx.socket(zmq.PULL)
        self.feed.bind(FEED_ADDR)
        self.on_output = on_output
        self.period, self.threshold = heartbeat_period, heartbeat_threshold
        self.max_retries = max_retries
        self.poll_period = poll_period
        self.managers: dict[bytes, ManagerState] = {}
        self.pending: deque[Task] = deque()
        self.inbox: deque[list[Task]] = deque()  # batches handed over by other threads
        self.stop_event = threading.Event()
        self.last_beat = 0.0
        self.idle_since = time.monotonic()
        #: refused input, by reason (results for tasks not dispatched to their sender, ...)
        self.stats = {"bad_messages": 0, "foreign_results": 0, "foreign_running": 0,
                      "unregistered": 0, "loop_errors": 0}

    @property
    def url(self) -> str:
        return _tcp(self.address, self.port)

    def feeder(self) -> zmq.Socket:
        """A PUSH socket for one other thread's wake-up calls (see :meth:`submit`)."""
        s = self.ctx.socket(zmq.PUSH)
        s.connect(FEED_ADDR)
        return s

    def submit(self, tasks: list[Task], wake: zmq.Socket) -> None:
        """Queue tasks from another thread; ``wake`` is that thread's feeder socket."""
        self.inbox.append(tasks)  # deque.append is thread-safe
        wake.send(b"")

    # --------------------------------------------------------------- queries
    def outstanding(self) -> int:
        return len(self.pending) + sum(len(m.tasks) for m in self.managers.values())

    def snapshot(self) -> dict:
        managers = list(self.managers.values())
        busy = sum(len(m.tasks) for m in managers)
        total = sum(m.workers for m in managers)
        return {
            "managers": len(managers),
            "total_workers": total,
            "idle_workers": max(0, total - busy),
            "pending_tasks_in_interchange": len(self.pending),
            "running_tasks": busy,
            "manager_details": [
                {"manager_id": m.manager_id.decode(errors="replace"), "block_id": m.block_id,
                 "hostname": m.hostname, "pid": m.pid, "workers": m.workers,
                 "tasks": len(m.tasks), "containers": list(m.containers)}
                for m in managers],
        }

    def busy_blocks(self) -> set[str]:
        """Blocks whose managers hold tasks (not to be scaled in)."""
        return {m.block_id for m in self.managers.values() if m.tasks}

    # -------------------------------------------------------------- handlers
    def _origin(self, mid: bytes) -> str:
        """Who sent a message, for the log: manager id and, once known, host."""
        m = self.managers.get(mid)
        name = mid[:64].decode(errors="replace")
        return f"manager {name!r}" + (f" on {m.hostname!r}" if m is not None else "")

    def _on_manager_safe(self, frames: list[bytes]) -> None:
        """Handle one manager message; whatever it holds, never raise."""
        try:
            self._on_manager(frames)
        except ProtocolError as e:
            self.stats["bad_messages"] += 1
            log.error("dropping bad message from %s: %s", self._origin(frames[0]), e)
        except Exception as e:  # noqa: BLE001 - one message never stops the loop
            self.stats["bad_messages"] += 1
            log.exception("dropping message from %s that could not be handled: %s",
                          self._origin(frames[0]), type(e).__name__)

    def _on_manager(self, frames: list[bytes]) -> None:
        mid, rest = frames[0], frames[1:]
        msg = unpack(rest)
        now = time.monotonic()
        m = self.managers.get(mid)
        if msg.kind == Kind.REGISTER:
            h = msg.header
            if m is not None:  # re-registering would orphan the tasks it holds
                log.warning("%s registered again; ignored", self._origin(mid))
                m.last_heard = now
                return
            self.managers[mid] = ManagerState(mid, h.block_id, h.hostname, h.workers, h.capacity,
                                              now, containers=tuple(h.containers), pid=h.pid)
            log.info("manager %s registered (block %s, %s workers on %s)",
                     mid.decode(errors="replace"), h.block_id, h.workers, h.hostname)
            return
        if m is None:
            self.stats["unregistered"] += 1
            log.warning("message %s from unregistered %s dropped", msg.kind.decode(),
                        self._origin(mid))
            return
        m.last_heard = now
        if msg.kind == Kind.RESULTS:
            accepted, foreign = [], []
            for r in unpack_results(msg):
                task = m.tasks.pop(r.task_id, None)
                if task is None:  # never dispatched to this manager (or already answered)
                    foreign.append(r.task_id)
                    continue
                m.credits += 1
                r.task_group_id = task.task_group_id  # from the task, never the message
                accepted.append(r)
            if foreign:
                self.stats["foreign_results"] += len(foreign)
                log.warning("%s sent %d result(s) for tasks not dispatched to it; dropped: %s",
                            self._origin(mid), len(foreign), ", ".join(foreign[:10]))
            if accepted:
                self.on_output(accepted)
        elif msg.kind == Kind.RUNNING:
            mine = [t for t in dict.fromkeys(msg.header) if t in m.tasks]
            if len(mine) < len(msg.header):
                self.stats["foreign_running"] += len(msg.header) - len(mine)
                log.warning("%s reported %d task(s) running that are not its own; ignored",
                            self._origin(mid), len(msg.header) - len(mine))
            if mine:
                self.on_output([StatusUpdate(TaskState.RUNNING.value, mine)])
        elif msg.kind == Kind.HEARTBEAT:
            if msg.header is not None and msg.header.containers is not None:
                m.containers = tuple(msg.header.containers)  # containers its workers run now
        else:
            self.stats["bad_messages"] += 1
            log.warning("%s sent a %s message, which managers do not send; dropped",
                        self._origin(mid), msg.kind.decode())

    def _dispatch(self) -> None:
        if not self.pending or not self.managers:
            return
        for mid, tasks in assign(self.pending, list(self.managers.values())).items():
            m = self.managers[mid]
            try:
                self.router.send_multipart([mid, *pack_tasks(tasks)])
            except zmq.ZMQError as e:  # manager vanished between poll and send
                log.warning("cannot send to %s: %s", self._origin(mid), e)
                self.pending.extendleft(reversed(tasks))
                continue
            m.credits -= len(tasks)
            for t in tasks:
                m.tasks[t.task_id] = t

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self.last_beat >= self.period:
            for mid in list(self.managers):
                try:
                    self.router.send_multipart([mid, *pack(Kind.HEARTBEAT, {"t": time.time()})])
                except zmq.ZMQError:
                    pass
            self.last_beat = now
        for mid, m in list(self.managers.items()):
            if now - m.last_heard > self.threshold:
                log.error("%s silent for %.1fs: declared lost with %d tasks",
                          self._origin(mid), now - m.last_heard, len(m.tasks))
                del self.managers[mid]
                retry, failed = lost_manager_tasks(m, self.max_retries)
                self.pending.extendleft(reversed(retry))
                if failed:
                    self.on_output(failed)
        if self.outstanding():
            self.idle_since = now

    # ------------------------------------------------------------------ loop
    def _step(self, poller: zmq.Poller) -> None:
        for sock, _ in poller.poll(self.poll_period * 1000):
            if sock is self.feed:
                while self.feed.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    self.feed.recv()
                while self.inbox:
                    self.pending.extend(self.inbox.popleft())
            else:
                while self.router.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    self._on_manager_safe(self.router.recv_multipart())
        self._dispatch()
        self._housekeeping()

    def run(self) -> None:
        """The loop: until :attr:`stop_event`; nothing a manager sends ends it."""
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.feed, zmq.POLLIN)
        while not self.stop_event.is_set():
            try:
                self._step(poller)
            except Exception:  # noqa: BLE001 - log, keep serving the other managers
                self.stats["loop_errors"] += 1
                log.exception("interchange loop error; continuing")
                self.stop_event.wait(self.poll_period)
        self._shutdown_managers()

    def _shutdown_managers(self) -> None:
        for mid in list(self.managers):
            try:
                self.router.send_multipart([mid, *pack(Kind.SHUTDOWN)])
            except zmq.ZMQError:
                pass

    def close(self) -> None:
        self.router.close(linger=500)
        self.feed.close()
        self.auth.stop()
