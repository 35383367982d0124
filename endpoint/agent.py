"""The endpoint agent: registers with the service, reads the endpoint's task
stream as a consumer group, feeds the interchange, writes results back, and
reports heartbeats and status.

Delivery is at-least-once: a task-stream entry (one submit request's batch)
is acknowledged and deleted only in the transaction that appends the result of
its last unfinished task, and an agent that restarts first re-reads the
entries it had taken but not acknowledged, re-running their tasks (DESIGN
decision 4; the ingester keeps the first result of a task that ran twice).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import threading
import time
from pathlib import Path

import redis

from endpoint.blocks import Blocks
from endpoint.config import Config
from endpoint.execute import failure
from endpoint.interchange import Interchange
from endpoint.strategy import ScalingInput, decide
from funcx.defaults import setting
from funcx.errors import FunctionNotAllowed, SerializationError
from funcx.protocol.messages import ProtocolError, Result, StatusUpdate, Task
from funcx.protocol.streams import decode_task_entry, encode_results
from funcx.protocol.states import TaskState
from funcx.sdk.web_client import WebClient
from funcx.version import __version__

log = logging.getLogger("funcx.agent")
WRITE_BUSY_S = 0.005  # a write this recent means results are streaming in
WRITE_LINGER_S = 0.002  # then wait up to this long to fill the transaction
WRITE_MAX = 2000  # results per transaction at most
STATUS_DEFER_S = 0.05  # status-only updates wait this long for results to join them
AUTH_ERRORS = ("WRONGPASS", "NOPERM", "NOAUTH", "invalid username-password")


def register(web: WebClient, name: str, config: Config, endpoint_id: str | None) -> dict:
    body = {
        "endpoint_name": name,
        "display_name": config.display_name or name,
        "public": config.public,
        "metadata": {"hostname": socket.gethostname(), "endpoint_version": __version__,
                     "provider": type(config.provider).__name__,
                     "max_workers_per_node": config.max_workers_per_node},
    }
    if config.allowed_functions is not None:
        body["allowed_functions"] = list(config.allowed_functions)
    if endpoint_id:
        return web.put(f"/v3/endpoints/{endpoint_id}", body)
    return web.post("/v3/endpoints", body)


class Agent:
    def __init__(self, name: str, config: Config, web: WebClient, run_dir: Path,
                 endpoint_id: str | None = None):
        self.name, self.config, self.web, self.run_dir = name, config, web, run_dir
        self.info = register(web, name, config, endpoint_id)
        self.endpoint_id = self.info["endpoint_id"]
        self.r = self._connect()
        self.stop_event = threading.Event()
        self.out: queue.Queue[list] = queue.Queue()
        self.entry_of: dict[str, str] = {}  # task id -> stream entry id (taken, unfinished)
        self.open_entries: dict[str, set[str]] = {}  # entry id -> its unfinished task ids
        self.stats = {"writes": 0, "results": 0, "reads": 0, "tasks": 0}
        self.room = threading.Condition()
        self.functions: dict[str, str] = {}
        self.containers: dict[str, dict] = {}
        self.read_count = int(setting("AGENT_READ_COUNT"))
        self.interchange = Interchange(config.address, config.interchange_port, self.out.put,
                                       config.heartbeat_period, config.heartbeat_threshold,
                                       config.task_retries_on_manager_lost, config.poll_period)
        self.blocks = Blocks(config, self.interchange.url, run_dir)
        self.threads: list[threading.Thread] = []

    def _connect(self) -> redis.Redis:
        return redis.Redis.from_url(self.info["redis_url"], decode_responses=True,
                                    socket_keepalive=True, health_check_interval=15)

    def _reregister(self) -> None:
        """Fresh Redis credentials (after a Redis restart that lost ACL users)."""
        log.warning("redis refused our credentials; registering again")
        self.info = register(self.web, self.name, self.config, self.endpoint_id)
        self.r = self._connect()

    # --------------------------------------------------------------- reading
    def _ack(self, entry_ids: list[str]) -> None:
        with self.r.pipeline(transaction=True) as p:
            p.xack(self.info["task_stream"], self.info["agent_group"], *entry_ids)
            p.xdel(self.info["task_stream"], *entry_ids)
            p.execute()

    def _take(self, entries: list) -> None:
        """Start the tasks of newly read stream entries (each entry holds a batch)."""
        tasks: list[Task] = []
        failed: list[Result] = []
        empty: list[str] = []
        for entry_id, fields in entries:
            if entry_id in self.open_entries:
                continue  # re-read after an outage: we are already on it
            if not fields:  # deleted while pending: nothing to run
                empty.append(entry_id)
                continue
            try:
                batch = decode_task_entry(fields)
            except ProtocolError as e:
                log.error("dropping malformed task entry %s: %s", entry_id, e)
                empty.append(entry_id)
                continue
            self.open_entries[entry_id] = {t.task_id for t in batch}
            allowed = self.config.allowed_functions
            for task in batch:
                self.entry_of[task.task_id] = entry_id
                if allowed is not None and task.function_id not in allowed:
                    failed.append(failure(task, FunctionNotAllowed(task.function_id)))
                else:
                    tasks.append(task)
        if tasks:  # drop tasks cancelled while they were queued
            flags = self.r.smismember(self.info["cancelled_key"], [t.task_id for t in tasks])
            gone = [t for t, f in zip(tasks, flags) if f]
            if gone:
                for t in gone:
                    entry = self.entry_of.pop(t.task_id)
                    self.open_entries[entry].discard(t.task_id)
                    if not self.open_entries[entry]:
                        del self.open_entries[entry]
                        empty.append(entry)
                self.r.srem(self.info["cancelled_key"], *[t.task_id for t in gone])
                tasks = [t for t, f in zip(tasks, flags) if not f]
        if empty:
            self._ack(empty)
        self._attach_containers(tasks)
        missing = sorted({t.function_id for t in tasks} - self.functions.keys())
        if missing:
            codes = self.r.mget([self.info["function_key_prefix"] + f for f in missing])
            self.functions.update({f: c for f, c in zip(missing, codes) if c})
        ready = []
        for t in tasks:
            code = self.functions.get(t.function_id)
            if code is None:
                failed.append(failure(t, SerializationError(
                    f"the code of function {t.function_id} is not available to this endpoint")))
            else:
                t.function_code = code
                ready.append(t)
        if failed:
            self.out.put(failed)
        self.stats["tasks"] += len(ready)
        if ready:
            if not self.interchange.managers:  # nothing to run them on yet
                self.out.put([StatusUpdate(TaskState.WAITING_FOR_NODES.value,
                                           [t.task_id for t in ready])])
            self.interchange.submit(ready, self.feed)

    def _attach_containers(self, tasks: list[Task]) -> None:
        """Give container tasks their image spec (copied for us by the service)."""
        wanted = sorted({t.container_id for t in tasks if t.container_id} - self.containers.keys())
        if wanted:
            specs = self.r.mget([self.info["container_key_prefix"] + c for c in wanted])
            self.containers.update({c: json.loads(s) for c, s in zip(wanted, specs) if s})
        for t in tasks:
            if t.container_id:
                t.container_spec = self.containers.get(t.container_id, {})

    def reader(self) -> None:
        self.feed = self.interchange.feeder()
        stream, group = self.info["task_stream"], self.info["agent_group"]
        consumer = self.info["agent_consumer"]
        cursor = "0"  # first re-read what a previous run took and did not finish
        backoff = 0.1
        while not self.stop_event.is_set():
            with self.room:
                while len(self.entry_of) >= self.config.max_inflight and not self.stop_event.is_set():
                    self.room.wait(0.5)
            count = max(1, min(self.read_count, self.config.max_inflight - len(self.entry_of)))
            try:
                res = self.r.xreadgroup(group, consumer, {stream: cursor}, count=count,
                                        block=1000 if cursor == ">" else None)
                backoff = 0.1
            except redis.ResponseError as e:
                if any(x in str(e) for x in AUTH_ERRORS):
                    self._reregister()
                    continue
                log.error("reading tasks: %s", e)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5)
                continue
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis unavailable while reading (%s)", type(e).__name__)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5)
                cursor = "0"  # after an outage, re-check what we hold
                continue
            entries = res[0][1] if res else []
            if cursor != ">":  # walking our own pending entries
                if not entries:
                    cursor = ">"
                    continue
                cursor = entries[-1][0]
                entries = [e for e in entries if e[0] not in self.open_entries]
                if entries:
                    log.info("reclaimed %d task(s) taken earlier and not finished", len(entries))
            if entries:
                self.stats["reads"] += 1
                self._take(entries)
        self.feed.close()

    # --------------------------------------------------------------- writing
    def writer(self) -> None:
        """Write what the interchange hands back, in as few transactions as it
        takes.  Results are written at once when idle and after a short linger
        under load; status-only updates wait up to STATUS_DEFER_S, so a task
        that finishes quickly never needs its "running" written at all."""
        stream, results_stream = self.info["task_stream"], self.info["result_stream"]
        group = self.info["agent_group"]
        last_results_write = 0.0
        held: list = []  # status updates waiting to be written
        held_since = 0.0
        while True:
            timeout = 0.5 if not held else max(0.0, held_since + STATUS_DEFER_S - time.monotonic())
            try:
                batch = held + list(self.out.get(timeout=timeout))
            except queue.Empty:
                if held:
                    self._write(held, stream, results_stream, group)
                    held = []
                elif self.stop_event.is_set():
                    return
                continue
            if not any(isinstance(i, Result) for i in batch):
                if not held:  # the clock starts with the first held update
                    held_since = time.monotonic()
                held = batch
                continue
            held = []
            # under load (results were written moments ago) linger briefly so one
            # transaction carries many results; when idle, write at once
            busy = time.monotonic() - last_results_write < WRITE_BUSY_S
            deadline = time.monotonic() + (WRITE_LINGER_S if busy else 0.0)
            while len(batch) < WRITE_MAX:
                left = deadline - time.monotonic()
                try:
                    batch.extend(self.out.get(timeout=left) if left > 0 else self.out.get_nowait())
                except queue.Empty:
                    break
            self._write(batch, stream, results_stream, group)
            last_results_write = time.monotonic()

    def _write(self, batch: list, stream: str, results_stream: str, group: str) -> None:
        """One transaction: the results (one entry), status updates, and the
        acknowledgement of every task entry whose tasks are now all done."""
        results, by_status, seen = [], {}, set()
        for item in batch:
            if isinstance(item, Result):
                if item.task_id in self.entry_of and item.task_id not in seen:
                    results.append(item)  # else a late duplicate: the first result stands
                    seen.add(item.task_id)
            elif isinstance(item, StatusUpdate):
                by_status.setdefault(item.status, []).extend(item.task_ids)
        # one update per status, without tasks whose result is in this very batch
        updates = [StatusUpdate(st, [t for t in ids if t not in seen])
                   for st, ids in by_status.items()]
        updates = [u for u in updates if u.task_ids]
        remaining = {}
        for r in results:
            entry = self.entry_of[r.task_id]
            remaining.setdefault(entry, set(self.open_entries[entry])).discard(r.task_id)
        finished = [e for e, left in remaining.items() if not left]
        backoff = 0.1
        while True:
            try:
                with self.r.pipeline(transaction=True) as p:
                    if results:
                        p.xadd(results_stream, encode_results(results))
                    for u in updates:
                        p.xadd(results_stream, u.to_fields())
                    if finished:
                        p.xack(stream, group, *finished)
                        p.xdel(stream, *finished)
                    p.execute()
                self.stats["writes"] += 1
                self.stats["results"] += len(results)
                break
            except redis.ResponseError as e:
                if any(x in str(e) for x in AUTH_ERRORS):
                    self._reregister()
                    continue
                raise
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis unavailable while writing results (%s); retrying",
                            type(e).__name__)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5)
        with self.room:
            for r in results:
                self.entry_of.pop(r.task_id, None)
            for entry, left in remaining.items():
                if left:
                    self.open_entries[entry] = left
                else:
                    self.open_entries.pop(entry, None)
            self.room.notify_all()

    # ------------------------------------------------------ heartbeat, scale
    def heartbeat(self) -> None:
        key = self.info["status_key"]
        ttl = max(1, int(self.config.heartbeat_threshold))
        while not self.stop_event.is_set():
            snap = self.interchange.snapshot()
            snap["outstanding_in_agent"] = len(self.entry_of)
            snap["blocks"] = len(self.blocks.jobs)
            snap["agent_pid"] = os.getpid()
            try:
                with self.r.pipeline(transaction=True) as p:
                    p.hset(key, mapping={"heartbeat_t": repr(time.time()),
                                         "details": json.dumps(snap)})
                    p.expire(key, ttl)
                    p.execute()
            except redis.RedisError as e:
                log.warning("heartbeat failed: %s", type(e).__name__)
            self.stop_event.wait(self.config.heartbeat_period)

    def scale_once(self) -> None:
        self.blocks.forget_finished()
        if not self.config.scaling_enabled:
            return
        delta = decide(ScalingInput(
            outstanding=len(self.entry_of), blocks=len(self.blocks.jobs),
            workers_per_block=self.config.workers_per_node(),
            min_blocks=self.blocks.min_blocks, max_blocks=self.blocks.max_blocks,
            idle_for=time.monotonic() - self.interchange.idle_since,
            max_idletime=self.config.max_idletime))
        if delta > 0:
            self.blocks.scale_out(delta)
        elif delta < 0:
            busy = self.interchange.busy_blocks()
            idle = [b for b in self.blocks.jobs if b not in busy]
            self.blocks.scale_in(idle[: -delta])

    # ----------------------------------------------------------------- life
    def start(self) -> None:
        self.blocks.scale_out(max(self.blocks.init_blocks, self.blocks.min_blocks))
        for target, name in ((self.interchange.run, "interchange"), (self.reader, "reader"),
                             (self.writer, "writer"), (self.heartbeat, "heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self.threads.append(t)
        log.info("endpoint %s (%s) running; interchange at %s", self.name, self.endpoint_id,
                 self.interchange.url)

    def run_until_stopped(self) -> None:
        while not self.stop_event.wait(1.0):
            try:
                self.scale_once()
            except Exception:
                log.exception("scaling failed")

    def stop(self) -> None:
        self.stop_event.set()
        with self.room:
            self.room.notify_all()
        self.interchange.stop_event.set()
        for t in self.threads:
            t.join(timeout=10)
        self.blocks.stop_all()
        self.interchange.close()
        try:
            self.r.delete(self.info["status_key"])  # offline at once, not after the TTL
        except redis.RedisError:
            pass
        log.info("endpoint %s stopped (%s)", self.name,
                 ", ".join(f"{k} {v}" for k, v in self.stats.items()))


def install_signal_handlers(agent: Agent) -> None:
    def _stop(*_):
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
