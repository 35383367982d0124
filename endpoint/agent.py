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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from endpoint import local_socket, redis_link
from endpoint.addresses import AddressPlan, is_local_provider, plan, tcp_url
from endpoint.agent_blocks import BlockScaling
from endpoint.agent_state import (
    Ack,
    AgentState,
    CancelledFlags,
    CancelTasks,
    CheckCancelled,
    ContainerSpecs,
    Dispatch,
    EntriesRead,
    Event,
    Fail,
    FetchContainers,
    FetchFunctions,
    ForgetCancelled,
    FunctionCodes,
    InFlightCancelled,
    Instruction,
    Outage,
    Reclaiming,
    Report,
    ResultsReady,
    Write,
    WriteCommitted,
)
from endpoint.blobs import InputBlobs, redis_options, result_blobs
from endpoint.block_health import ADDRESS, BlockHealth, register_timeout_for
from endpoint.blocks import Blocks
from endpoint.config import Config
from endpoint.interchange import Interchange
from funcx.defaults import setting
from funcx.protocol.messages import Result
from funcx.protocol.streams import encode_results
from funcx.sdk.web_client import WebClient
from funcx.version import __version__

log = logging.getLogger("funcx.agent")
# the writer's timing (funcx/defaults.py documents each)
WRITE_BUSY_S = float(setting("AGENT_WRITE_BUSY_S"))
WRITE_LINGER_S = float(setting("AGENT_WRITE_LINGER_S"))
WRITE_MAX = int(setting("AGENT_WRITE_MAX"))
STATUS_DEFER_S = float(setting("AGENT_STATUS_DEFER_S"))
BLOB_TTL_S = int(setting("TASK_TTL_S"))  # a result blob lives as long as a task record
AUTH_ERRORS = ("WRONGPASS", "NOPERM", "NOAUTH", "invalid username-password")
#: after a refused SCARD (a service whose grant predates it), ask per id for
#: this long before trying SCARD again (a service upgraded meanwhile is noticed)
SCARD_RETRY_S = 300.0


class _Stopping(Exception):
    """The agent stopped while a Redis call was being retried."""


def register(web: WebClient, name: str, config: Config, endpoint_id: str | None,
             extra_metadata: dict | None = None) -> dict:
    """Register (or re-register) the endpoint; ``extra_metadata``: what a
    multi-user parent publishes (endpoint.multiuser.parent)."""
    body = {
        "endpoint_name": name,
        "display_name": config.display_name or name,
        "public": config.public,
        "metadata": {"hostname": socket.gethostname(), "endpoint_version": __version__,
                     "provider": type(config.provider).__name__,
                     "max_workers_per_node": config.max_workers_per_node,
                     **config.serializer_metadata(), **(extra_metadata or {})},
    }
    if config.allowed_functions is not None:
        body["allowed_functions"] = list(config.allowed_functions)
    # the owner's bounds (unset ones omitted), enforced by the service at submit
    body["limits"] = config.limits()
    if endpoint_id:
        return web.put(f"/v3/endpoints/{endpoint_id}", body)
    return web.post("/v3/endpoints", body)


class Agent(BlockScaling):
    """The I/O shell around :class:`AgentState`: its threads read and write
    Redis and talk to the interchange, and only carry out what the state
    machine answers.  Every call into the state machine holds ``self.room``
    (one lock; the reader also waits on it for room under back-pressure)."""

    def __init__(self, name: str, config: Config, web: WebClient, run_dir: Path,
                 endpoint_id: str | None, info: dict):
        """``info``: the service's answer to registration (see :meth:`registered`,
        which does the HTTP call, so constructing an agent does no I/O to the service)."""
        self.name, self.config, self.web, self.run_dir = name, config, web, run_dir
        self.info = info
        self.endpoint_id = self.info["endpoint_id"]
        self.where = redis_link.where(self.info["redis_url"])  # host:port, for logs
        self.r = self._connect()
        self.stop_event = threading.Event()
        self.out: queue.Queue[list] = queue.Queue()
        self.room = threading.Condition()  # the one lock around self.state
        self.state = AgentState(config.max_inflight, int(setting("AGENT_READ_COUNT")),
                                config.allowed_functions, config.allowed_serializer_ids)
        local = is_local_provider(config.provider)
        self.address: AddressPlan = plan(config.address, local)
        self.interchange = self._make_interchange(config, run_dir)
        #: what managers are told to connect to (never 0.0.0.0; loopback only for local blocks)
        self.url = tcp_url(self.address.advertise, self.interchange.port)
        # blocks that stay on this host connect over the Unix socket (endpoint.local_socket)
        self.blocks = Blocks(config, self.interchange.local_url or self.url,
                             run_dir, self.interchange.keys.manager_file)
        self.health_lock = threading.Lock()  # the scaling loop writes, the heartbeat reads
        self.health = BlockHealth(
            register_timeout_for(config.block_register_timeout, local,
                                 float(setting("BLOCK_REGISTER_TIMEOUT_S"))),
            float(setting("BLOCK_RETRY_MIN_S")), float(setting("BLOCK_RETRY_MAX_S")))
        if self.address.problem:
            log.error("interchange address: %s", self.address.problem)
            self.health.report(ADDRESS, self.address.problem, time.time())
        self.threads: list[threading.Thread] = []
        #: when check_cancelled may try SCARD again after it was refused
        self._scard_retry_at = 0.0
        #: input blobs of the tasks in flight (endpoint.blobs), read with a bytes client
        self.inputs = InputBlobs(self.endpoint_id, config.allowed_serializer_ids)
        self._bin: tuple[Any, redis.Redis] | None = None
        #: the same for the reader's SCARD beside each read (its own thread)
        self._read_scard_at = 0.0

    def _make_interchange(self, config: Config, run_dir: Path) -> Interchange:
        """Where dispatched tasks go (a multi-user parent routes them instead)."""
        return Interchange(self.address.bind, config.interchange_port, self.out.put,
                           config.heartbeat_period, config.heartbeat_threshold,
                           config.task_retries_on_manager_lost, config.poll_period,
                           key_dir=run_dir / "curve",
                           local_dir=local_socket.for_provider(config.provider, run_dir))

    def registration_metadata(self) -> dict:
        """Metadata added to the registration ({}; see endpoint.multiuser.parent)."""
        return {}

    @classmethod
    def registered(cls, name: str, config: Config, web: WebClient, run_dir: Path,
                   endpoint_id: str | None = None) -> Agent:
        """Register with the service, check that the Redis it hands out answers
        (else :class:`endpoint.redis_link.RedisUnreachable`, naming host:port and
        the likely cause), then build the agent on its answer."""
        info = register(web, name, config, endpoint_id)
        redis_link.check(info, run_dir, float(setting("AGENT_REDIS_CHECK_S")))
        return cls(name, config, web, run_dir, endpoint_id, info=info)

    def _connect(self) -> redis.Redis:
        """A client of the endpoint's Redis: TLS (verified) for ``rediss://``."""
        return redis_link.connect(self.info, self.run_dir, **redis_options())  # blobs: no copy

    def _reregister(self) -> None:
        """Fresh Redis credentials (after a Redis restart that lost ACL users)."""
        log.warning("redis at %s refused our credentials; registering again", self.where)
        self.info = register(self.web, self.name, self.config, self.endpoint_id,
                             self.registration_metadata())
        self.where = redis_link.where(self.info["redis_url"])
        self.r = self._connect()

    # --------------------------------------------------------------- reading
    def _handle(self, event: Event) -> list[Instruction]:
        with self.room:
            return self.state.handle(event)

    def _redis(self, call: Callable[[redis.Redis], Any], what: str) -> Any:
        """``call(self.r)``, retried until it succeeds or the agent stops: the
        take in progress holds its entries, so it must finish."""
        backoff = 0.1
        while True:
            try:
                return call(self.r)
            except redis.ResponseError as e:
                if any(x in str(e) for x in AUTH_ERRORS):
                    self._reregister()
                    continue
                log.error("%s: %s", what, e)
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis at %s unavailable while %s (%s); retrying", self.where, what,
                            type(e).__name__)
            if self.stop_event.wait(backoff):
                raise _Stopping
            backoff = min(backoff * 2, 5)

    def _ack(self, r: redis.Redis, entry_ids: list[str], blobs: list[str] | None = None) -> None:
        with r.pipeline(transaction=True) as p:
            p.xack(self.info["task_stream"], self.info["agent_group"], *entry_ids)
            p.xdel(self.info["task_stream"], *entry_ids)
            if blobs:  # the input blobs of those entries' tasks
                p.delete(*blobs)
            p.execute()

    def _binary(self) -> redis.Redis:
        """A client answering bytes (input blobs), on the current credentials."""
        if self._bin is None or self._bin[0] is not self.r:
            self._bin = (self.r, redis_link.connect(self.info, self.run_dir,
                                                    **redis_options(for_blobs=True)))
        return self._bin[1]

    def _dispatch(self, tasks: list, feed: Any) -> None:
        """Attach the input blobs the tasks name (one MGET; a task whose blob
        is gone fails alone, endpoint.blobs), then hand them to the interchange."""
        tasks, failed = self.inputs.attach(
            tasks, lambda ks: self._redis(lambda r: self._binary().mget(ks),
                                          "fetching input blobs"))
        if failed:
            self.out.put(failed)
        if tasks:
            self.interchange.submit(tasks, feed)

    def check_cancelled(self, feed: Any) -> None:
        """Find the tasks in flight that were cancelled at the service (the
        endpoint's cancelled set, usually empty) and carry out what the state
        machine answers: acknowledge what has nothing left to run and have the
        interchange drop them or kill their workers (``feed``: this thread's
        feeder socket).  A Redis error skips this round."""
        key = self.info["cancelled_key"]
        with self.room:
            ids = self.state.in_flight()
        if not ids:
            return
        try:
            size: int | None = None
            if time.monotonic() >= self._scard_retry_at:
                try:
                    size = self.r.scard(key)
                except redis.ResponseError:  # a service older than SCARD's grant: ask per id
                    self._scard_retry_at = time.monotonic() + SCARD_RETRY_S
                    log.debug("SCARD refused on %s; asking per task id", key)
            if size == 0:
                return
            if size is not None and size <= len(ids):
                members = self.r.smembers(key)
                gone = [t for t in ids if t in members]
            else:
                gone = []
                for i in range(0, len(ids), 1000):
                    chunk = ids[i:i + 1000]
                    gone += [t for t, f in zip(chunk, self.r.smismember(key, chunk)) if f]
        except redis.RedisError as e:
            log.debug("checking cancellations: %s", type(e).__name__)
            return
        if not gone:
            return
        log.info("cancelling %d task(s) in flight: %s", len(gone), ", ".join(gone[:10]))
        for ins in self._handle(InFlightCancelled(gone)):
            self._do(ins, feed)

    def _carry_out(self, event: Event) -> None:
        """Feed ``event`` to the state machine and carry out what it answers,
        feeding the answers of Redis queries back until the take is done."""
        answer: Event | None = event
        while answer is not None:
            instructions = self._handle(answer)
            answer = None
            for ins in instructions:  # a query, if any, comes last
                answer = self._do(ins)

    def _do(self, ins: Instruction, feed: Any = None) -> Event | None:
        """Carry out one reader instruction; the event answering it, if any.
        ``feed``: the calling thread's feeder socket (default: the reader's)."""
        match ins:
            case Dispatch(tasks=tasks):
                self._dispatch(tasks, feed or self.feed)
            case CancelTasks(task_ids=ids):
                self.interchange.cancel(ids, feed or self.feed)
            case CheckCancelled(task_ids=ids):
                return CancelledFlags(ids, self._redis(
                    lambda r: r.smismember(self.info["cancelled_key"], ids),
                    "checking cancellations"))
            case ForgetCancelled(task_ids=ids):
                self._redis(lambda r: r.srem(self.info["cancelled_key"], *ids),
                            "forgetting cancellations")
            case Ack(entry_ids=ids, dropped=dropped):
                for entry_id, reason in dropped:
                    log.error("dropping malformed task entry %s: %s", entry_id, reason)
                drop = self.inputs.take(ids)
                self._redis(lambda r: self._ack(r, ids, drop), "acknowledging task entries")
            case FetchContainers(container_ids=ids):
                prefix = self.info["container_key_prefix"]
                specs = self._redis(lambda r: r.mget([prefix + c for c in ids]),
                                    "fetching container specs")
                return ContainerSpecs(dict(zip(ids, specs)))
            case FetchFunctions(function_ids=ids):
                prefix = self.info["function_key_prefix"]
                codes = self._redis(lambda r: r.mget([prefix + f for f in ids]),
                                    "fetching function code")
                return FunctionCodes(dict(zip(ids, codes)))
            case Fail(results=results):
                self.out.put(results)
            case Report(updates=updates):
                self.out.put(updates)
            case Reclaiming(entry_ids=ids):
                log.info("reclaimed %d task entries taken earlier and not finished", len(ids))
            case _:
                raise TypeError(f"the reader cannot carry out {ins!r}")
        return None

    def reader(self) -> None:
        self.feed = self.interchange.feeder()
        try:
            self._read_loop()
        except _Stopping:
            pass
        finally:
            self.feed.close()

    def _read_loop(self) -> None:
        stream, group = self.info["task_stream"], self.info["agent_group"]
        consumer = self.info["agent_consumer"]
        backoff = 0.1
        while not self.stop_event.is_set():
            with self.room:  # back-pressure: wait while max_inflight tasks are held
                read = self.state.next_read()
                while read is None and not self.stop_event.is_set():
                    self.room.wait(0.5)
                    read = self.state.next_read()
            if read is None:
                return
            try:
                res, none_cancelled = self._read(stream, group, consumer, read)
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
                log.warning("redis at %s unavailable while reading (%s)", self.where,
                            type(e).__name__)
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 5)
                self._handle(Outage())  # after an outage, re-check what we hold
                continue
            entries = res[0][1] if res else []
            self.inputs.note_entries(entries)  # their input blobs go with their ack
            self._carry_out(EntriesRead(entries, have_nodes=bool(self.interchange.managers),
                                        none_cancelled=none_cancelled))

    def _read(self, stream: str, group: str, consumer: str, read: Any) -> tuple[Any, bool]:
        """The read, and whether the cancelled set was empty after it
        (:func:`endpoint.redis_link.read_tasks`; a refused SCARD: not tried with
        the reads of the next SCARD_RETRY_S)."""
        res, empty = redis_link.read_tasks(self.r, stream, group, consumer, read,
                                           self.info["cancelled_key"],
                                           time.monotonic() >= self._read_scard_at)
        if empty is None:
            self._read_scard_at = time.monotonic() + SCARD_RETRY_S
        return res, bool(empty)

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
            # under load (a write moments ago, more in flight than this batch ends)
            # linger so one transaction carries many results; else write at once
            finishing = sum(1 for i in batch if isinstance(i, Result))
            with self.room:
                others = self.state.inflight > finishing
            busy = others and time.monotonic() - last_results_write < WRITE_BUSY_S
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
        acknowledgement of every task entry whose tasks are now all done (the
        state machine plans it; see :meth:`AgentState._results_ready`)."""
        write = self._handle(ResultsReady(batch))[0]
        assert isinstance(write, Write)
        drop = self.inputs.take(write.ack_entries)  # input blobs, deleted with the ack
        backoff = 0.1
        while write:
            try:
                with self.r.pipeline(transaction=True) as p:
                    if write.results:  # result blobs first, then the entry naming them
                        for task_id, blob in result_blobs(write.results):
                            p.set(self.inputs.key(task_id), blob, ex=BLOB_TTL_S)
                        p.xadd(results_stream, encode_results(write.results))
                    for u in write.updates:
                        p.xadd(results_stream, u.to_fields())
                    if write.ack_entries:
                        p.xack(stream, group, *write.ack_entries)
                        p.xdel(stream, *write.ack_entries)
                    if drop:
                        p.delete(*drop)
                    if write.forget:  # cancelled tasks of those entries: done with
                        p.srem(self.info["cancelled_key"], *write.forget)
                    p.execute()
                break
            except redis.ResponseError as e:
                if any(x in str(e) for x in AUTH_ERRORS):
                    self._reregister()
                    continue
                raise
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("redis at %s unavailable while writing results (%s); retrying",
                            self.where, type(e).__name__)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5)
        with self.room:
            self.state.handle(WriteCommitted(write))
            self.room.notify_all()

    # ------------------------------------------------------------- heartbeat
    def heartbeat(self) -> None:
        key = self.info["status_key"]
        seen = self.info.get("seen_key")  # a service before issue 16 has none
        ttl = max(1, int(self.config.heartbeat_threshold))
        while not self.stop_event.is_set():
            snap = self.interchange.snapshot()
            with self.room:
                snap["outstanding_in_agent"] = self.state.inflight
            snap["blocks"] = len(self.blocks.jobs)
            snap["interchange_address"] = self.url  # what managers are told
            with self.health_lock:
                snap["problems"] = self.health.problems()
            snap["agent_pid"] = os.getpid()
            try:
                now = repr(time.time())
                with self.r.pipeline(transaction=True) as p:
                    p.hset(key, mapping={"heartbeat_t": now, "details": json.dumps(snap)})
                    p.expire(key, ttl)
                    if seen:  # outlives the agent: "offline since"
                        p.hset(seen, "heartbeat_t", now)
                    p.execute()
            except redis.RedisError as e:
                log.warning("heartbeat to redis at %s failed: %s", self.where, type(e).__name__)
            self.stop_event.wait(self.config.heartbeat_period)

    # ----------------------------------------------------------------- life
    def start(self) -> None:
        self.submit_blocks(max(self.blocks.init_blocks, self.blocks.min_blocks))
        for target, name in ((self.interchange.run, "interchange"), (self.reader, "reader"),
                             (self.writer, "writer"), (self.heartbeat, "heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self.threads.append(t)
        log.info("endpoint %s (%s) running; interchange bound to %s, managers connect to %s",
                 self.name, self.endpoint_id, self.interchange.url, self.url)

    def run_until_stopped(self) -> None:
        """Look for cancelled tasks in flight, and scale, once a second.
        Cancellations come first: a slow provider call (an ``sbatch`` that
        hangs) must not keep a cancelled task running."""
        feed = self.interchange.feeder()  # this thread's, for cancellations
        try:
            while not self.stop_event.wait(1.0):
                try:
                    self.check_cancelled(feed)
                except _Stopping:
                    return
                except Exception:
                    log.exception("checking cancellations failed")
                try:
                    self.scale_once()
                except Exception:
                    log.exception("scaling failed")
        finally:
            feed.close(linger=0)

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
        with self.room:
            stats = dict(self.state.stats)
        log.info("endpoint %s stopped (%s)", self.name,
                 ", ".join(f"{k} {v}" for k, v in stats.items()))


def install_signal_handlers(agent: Agent) -> None:
    def _stop(*_):
        agent.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
