"""The interchange: a ZeroMQ ROUTER that managers connect to.  It receives
tasks from the agent's Redis reader, hands them to managers by credit, and
passes results and status changes back to the agent's writer.

Its loop runs in one thread and owns every socket it uses; other threads
hand it tasks with :meth:`submit` (an in-process queue plus a wake-up byte on
an inproc socket: tasks are not serialized to cross threads).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from typing import Callable

import zmq

from endpoint.scheduling import ManagerState, assign, lost_manager_tasks
from funcx.protocol.messages import (Kind, ProtocolError, Result, StatusUpdate, Task, pack,
                                     pack_tasks, unpack, unpack_results, unpack_tasks)
from funcx.protocol.states import TaskState

log = logging.getLogger("funcx.interchange")
FEED_ADDR = "inproc://funcx-tasks"


class Interchange:
    def __init__(self, address: str, port: int, on_output: Callable[[list], None],
                 heartbeat_period: float, heartbeat_threshold: float, max_retries: int,
                 poll_period: float = 0.1):
        self.ctx = zmq.Context.instance()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # loopback stays loopback; any other address listens on every interface
        # and is what managers on compute nodes are told to connect to
        loopback = address in ("127.0.0.1", "localhost", "::1")
        bind_host = address if loopback else "*"
        if port:
            self.router.bind(f"tcp://{bind_host}:{port}")
        else:
            port = self.router.bind_to_random_port(f"tcp://{bind_host}")
        self.port = port
        if address in ("0.0.0.0", "*"):
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

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{self.port}"

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
                {"manager_id": m.manager_id.decode(), "block_id": m.block_id,
                 "hostname": m.hostname, "pid": m.pid, "workers": m.workers,
                 "tasks": len(m.tasks), "containers": list(m.containers)}
                for m in managers],
        }

    def busy_blocks(self) -> set[str]:
        """Blocks whose managers hold tasks (not to be scaled in)."""
        return {m.block_id for m in self.managers.values() if m.tasks}

    # -------------------------------------------------------------- handlers
    def _on_manager(self, frames: list[bytes]) -> None:
        mid, rest = frames[0], frames[1:]
        msg = unpack(rest)
        now = time.monotonic()
        m = self.managers.get(mid)
        if msg.kind == Kind.REGISTER:
            h = msg.header
            self.managers[mid] = ManagerState(mid, h.block_id, h.hostname, h.workers, h.capacity,
                                              now, containers=tuple(h.containers), pid=h.pid)
            log.info("manager %s registered (block %s, %s workers on %s)", mid.decode(),
                     h.block_id, h.workers, h.hostname)
            return
        if m is None:
            log.warning("message %s from unregistered manager %s", msg.kind, mid)
            return
        m.last_heard = now
        if msg.kind == Kind.RESULTS:
            results = unpack_results(msg)
            for r in results:
                if m.tasks.pop(r.task_id, None) is not None:
                    m.credits += 1
            self.on_output(results)
        elif msg.kind == Kind.RUNNING:
            self.on_output([StatusUpdate(TaskState.RUNNING.value, list(msg.header))])
        elif msg.kind == Kind.HEARTBEAT and msg.header is not None:
            if msg.header.containers is not None:  # which containers its workers run now
                m.containers = tuple(msg.header.containers)

    def _dispatch(self) -> None:
        if not self.pending or not self.managers:
            return
        for mid, tasks in assign(self.pending, list(self.managers.values())).items():
            m = self.managers[mid]
            try:
                self.router.send_multipart([mid, *pack_tasks(tasks)])
            except zmq.ZMQError as e:  # manager vanished between poll and send
                log.warning("cannot send to manager %s: %s", mid, e)
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
                log.error("manager %s silent for %.1fs: declared lost with %d tasks",
                          mid.decode(), now - m.last_heard, len(m.tasks))
                del self.managers[mid]
                retry, failed = lost_manager_tasks(m, self.max_retries)
                self.pending.extendleft(reversed(retry))
                if failed:
                    self.on_output(failed)
        if self.outstanding():
            self.idle_since = now

    # ------------------------------------------------------------------ loop
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.feed, zmq.POLLIN)
        while not self.stop_event.is_set():
            for sock, _ in poller.poll(self.poll_period * 1000):
                try:
                    if sock is self.feed:
                        while self.feed.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                            self.feed.recv()
                        while self.inbox:
                            self.pending.extend(self.inbox.popleft())
                    else:
                        while self.router.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                            self._on_manager(self.router.recv_multipart())
                except ProtocolError as e:
                    log.error("dropping bad message: %s", e)
            self._dispatch()
            self._housekeeping()
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
