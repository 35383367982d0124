"""The interchange: a ZeroMQ ROUTER that managers connect to.  It receives
tasks from the agent's Redis reader, hands them to managers by credit, and
passes results and status changes back to the agent's writer.

Its loop runs in one thread and owns every socket it uses; other threads
hand it tasks with :meth:`submit` (an in-process queue plus a wake-up byte on
an inproc socket: tasks are not serialized to cross threads).

Managers are a separate tenant (DESIGN decision 8) and are distrusted:

* the ROUTER is a CurveZMQ server that accepts, through a ZAP handler, only
  the endpoint's manager key (:mod:`endpoint.curve`); any other client —
  no CURVE at all, or another keypair — is refused at the handshake; the
  same socket may also listen on a Unix socket in a 0700 directory, without
  CURVE, for managers on this host (:mod:`endpoint.local_socket`);
* it binds exactly the configured address (``0.0.0.0`` only when that is what
  the owner configured), never every interface behind the owner's back;
* every message is decoded through its schema in :mod:`funcx.protocol.messages`
  and handled alone: an exception from one message is logged with its origin
  (manager id, hostname) and dropped, and the loop carries on;
* a result (or a "running" notice) is accepted only for a task dispatched to
  the manager that sends it; the rest are counted in ``stats`` and logged
  with the manager id, never with their payloads.

The bookkeeping (managers, credits, which task is where, lost managers, the
queue, managers that come back) is the pure state machine
:class:`endpoint.interchange_state.InterchangeState`; this module only decodes
frames into its events and carries out its instructions on the sockets.

Links that come back (issue 15):

* the port is stable: with ``interchange_port = 0`` the first port chosen is
  kept in ``<run dir>/interchange_port`` (next to ``curve/``) and bound again
  at every start while it is free, so managers — in blocks or started by hand
  — reconnect after ``funcx-endpoint restart``;
* the ROUTER hands a manager's identity over to its newest connection
  (``ROUTER_HANDOVER``): a manager that reconnects after a cut the
  interchange never noticed is not refused as a duplicate;
* heartbeats tell each manager how many of its results arrived
  (``Heartbeat.acked``), so it can keep and resend the rest after a cut;
* when the endpoint stops, only the managers it started are told to shut
  down; hand-started ones (``Register.hand_started``) reconnect to the next
  start.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import zmq
from zmq.auth.thread import ThreadAuthenticator

from endpoint import blobs, local_socket
from endpoint.curve import CurveKeys
from endpoint.hardware_report import HardwareBook
from endpoint.interchange_state import (
    AskRegister,
    BadMessage,
    CancelRequested,
    Dropped,
    Event,
    HeartbeatFrom,
    InterchangeState,
    Lost,
    ManagerRegistered,
    Output,
    Registered,
    ResultsFrom,
    RunningFrom,
    SendCancel,
    SendFailed,
    SendHeartbeat,
    SendTasks,
    Stalled,
    StrayMessage,
    TasksQueued,
    Tick,
)
from endpoint.scheduling import ManagerState
from funcx.errors import FuncxError
from funcx.protocol.messages import (
    Kind,
    ProtocolError,
    Task,
    pack,
    pack_tasks,
    unpack,
    unpack_results,
)

log = logging.getLogger("funcx.interchange")
FEED_ADDR = "inproc://funcx-tasks"
WILDCARDS = ("0.0.0.0", "*")  # every interface: only when configured exactly so
#: plain ints (pyzmq's enum flags cost an object per use, several per message)
EVENTS, POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)


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
        return str(socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)[0][4][0])
    except (socket.gaierror, IndexError, UnicodeError) as e:
        raise InterchangeAddressError(
            f"interchange address {address!r} does not resolve ({e}); set `address` in the "
            f"endpoint config to an address of this host") from None


def _tcp(host: str, port: int | str) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


PORT_FILE = "interchange_port"  #: in the endpoint's run dir, beside curve/


def saved_port(path: Path) -> int:
    """The port a previous start chose (0: none, or unreadable)."""
    try:
        port = int(path.read_text().strip())
    except (OSError, ValueError):
        return 0
    return port if 0 < port < 65536 else 0


def save_port(path: Path, port: int) -> None:
    """Remember ``port`` for the next start (atomically; a failure is logged)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(f"{port}\n")
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot remember the interchange port in %s: %s", path, e)


class Interchange:
    """The ZeroMQ shell around :class:`InterchangeState`: one loop thread owns
    the sockets and the state; other threads call :meth:`submit` and read."""

    def __init__(self, address: str, port: int, on_output: Callable[[list], None],
                 heartbeat_period: float, heartbeat_threshold: float, max_retries: int,
                 poll_period: float = 0.1, *, key_dir: str | os.PathLike,
                 port_file: str | os.PathLike | None = None,
                 max_message_bytes: int | None = None,
                 max_messages_per_s: float | None = None,
                 local_dir: Path | None = None):
        """Listen on ``address:port`` for managers holding the manager key kept
        in ``key_dir`` (made there on first start).  Port 0: the port saved in
        ``port_file`` (default: ``interchange_port`` beside ``key_dir``, i.e. in
        the endpoint's run dir) when it is free, else any free one, saved there.
        ``max_message_bytes``: ZMQ_MAXMSGSIZE (a larger frame drops its sender's
        connection unread); ``max_messages_per_s``: manager messages read per
        second at most (more wait in ZeroMQ): both for managers run by a user who
        controls them (a multi-user endpoint's children).
        ``poll_period``: seconds, or a :class:`endpoint.config.Milliseconds`
        (``Config.poll_period``, in milliseconds as the funcX reference has it).
        ``local_dir``: a private directory (endpoint.local_socket) where the same
        socket also listens on a Unix socket, without CURVE, for managers on this
        host (:attr:`local_url`)."""
        seconds = getattr(poll_period, "seconds", None)  # a Milliseconds value
        if isinstance(seconds, float):
            poll_period = seconds
        self.keys = CurveKeys.load_or_create(Path(key_dir))
        self.ctx = zmq.Context()  # its own: one ZAP handler per context
        self.auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("funcx.interchange.zap"))
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(self.keys.authorized_dir))
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a manager reconnecting (same identity, new connection) replaces its old
        # connection, which this side may still think alive after a cut
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        if max_message_bytes:
            self.router.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
        #: the read budget (a token bucket): messages per second, tokens, last refill
        self._rate = float(max_messages_per_s or 0.0)
        self._tokens, self._refilled = self._rate, time.monotonic()
        self.keys.apply_server(self.router)
        host = bind_address(address)
        if ":" in host:
            self.router.ipv6 = True
        self.port_file = Path(port_file) if port_file else Path(key_dir).parent / PORT_FILE
        try:
            if port:
                self.router.bind(_tcp(host, port))
            else:
                port = self._bind_stable(host)
        except zmq.ZMQError as e:
            self.router.close()
            self.auth.stop()
            raise InterchangeAddressError(
                f"the interchange cannot listen on {address!r} port {port or 'any'} ({e}); "
                f"set `address` in the endpoint config to an address of this host") from None
        self.port = port
        self.bound = host
        self.local_dir = local_dir
        #: the Unix socket local managers connect to (None: none, CurveZMQ for all)
        self.local_url = self._bind_local(local_dir) if local_dir is not None else None
        #: blocks the agent cancelled (scale-in): their managers' silence is expected
        self.retired_blocks: set[str] = set()
        self.feed = self.ctx.socket(zmq.PULL)
        self.feed.bind(FEED_ADDR)
        self.on_output = on_output
        self.poll_period = poll_period
        # a loop that did not run for half the threshold (the process was stopped
        # or starved) does not blame the managers for the silence it did not hear;
        # a lost manager's tasks wait one threshold for it (it may only be cut off)
        self.state = InterchangeState(heartbeat_period, heartbeat_threshold, max_retries,
                                      time.monotonic(),
                                      stall_after=max(heartbeat_threshold / 2, 5 * poll_period),
                                      hold_lost=heartbeat_threshold)
        #: tasks and cancellations handed over by other threads, in order
        self.inbox: deque[TasksQueued | CancelRequested] = deque()
        #: results and status updates of the current loop step, for the agent
        self._outbox: list = []
        #: each registered manager's hardware report (as it registered; memory per beat)
        self.hardware = HardwareBook()
        self.stop_event = threading.Event()
        self._carry_out: dict[type, Callable[[Any], None]] = {
            SendTasks: self._send_tasks, SendHeartbeat: self._send_heartbeat,
            Output: self._output, Dropped: self._dropped,
            Registered: self._registered, Lost: self._lost, Stalled: self._stalled,
            AskRegister: self._ask_register, SendCancel: self._send_cancel}

    def _bind_stable(self, host: str) -> int:
        """Bind the port saved by an earlier start if it is free, else any free
        port; save the one bound (so managers find it after a restart)."""
        before = saved_port(self.port_file)
        if before:
            try:
                self.router.bind(_tcp(host, before))
                return before
            except zmq.ZMQError as e:
                log.warning("the interchange's port %d (from %s) is taken (%s); listening "
                            "on a new port: managers started for the old one must be "
                            "restarted", before, self.port_file, e)
        port = self.router.bind_to_random_port(
            f"tcp://[{host}]" if ":" in host else f"tcp://{host}")
        save_port(self.port_file, port)
        return port

    def _bind_local(self, directory: Path) -> str | None:
        """Also listen on ``directory``'s Unix socket, without CURVE.  Options
        are copied into each listener when it binds, so the TCP listener bound
        above keeps CURVE (tests/security/test_local_socket_trust.py holds
        this).  None, with a warning, when it cannot listen there."""
        url = local_socket.socket_url(directory)
        self.router.curve_server = False
        try:
            self.router.bind(url)
        except zmq.ZMQError as e:
            log.warning("local managers use CurveZMQ: cannot listen on %s (%s)", url, e)
            return None
        finally:
            self.keys.apply_server(self.router)  # anything bound later is CURVE again
        return url

    @property
    def url(self) -> str:
        """Where it listens (``tcp://0.0.0.0:PORT`` for a wildcard bind: the
        address managers are told is the agent's to choose, see endpoint.addresses)."""
        return _tcp(self.bound, self.port)

    def retire_blocks(self, block_ids: set[str]) -> None:
        """The agent cancelled these blocks (scale-in): when their managers fall
        silent that is logged as the normal end it is, not as a loss."""
        self.retired_blocks = self.retired_blocks | set(block_ids)  # one rebinding: thread-safe

    def feeder(self) -> zmq.Socket:
        """A PUSH socket for one other thread's wake-up calls (see :meth:`submit`)."""
        s = self.ctx.socket(zmq.PUSH)
        s.connect(FEED_ADDR)
        return s

    def submit(self, tasks: list[Task], wake: zmq.Socket) -> None:
        """Queue tasks from another thread; ``wake`` is that thread's feeder socket."""
        self.inbox.append(TasksQueued(tasks))  # deque.append is thread-safe
        wake.send(b"")

    def cancel(self, task_ids: list[str], wake: zmq.Socket) -> None:
        """From another thread: these tasks were cancelled at the service; drop
        them here and have the managers holding them kill them (in order with
        :meth:`submit`: a task handed over earlier is found)."""
        if task_ids:
            self.inbox.append(CancelRequested(list(task_ids)))
            wake.send(b"")

    # --------------------------------------------------------------- queries
    @property
    def managers(self) -> dict[bytes, ManagerState]:
        """Registered managers by id (read-only outside the loop)."""
        return self.state.managers

    @property
    def stats(self) -> dict[str, int]:
        """Refused input and loop errors, by reason."""
        return self.state.stats

    @property
    def idle_since(self) -> float:
        """``time.monotonic()`` of the last loop step with work outstanding."""
        return self.state.idle_since

    def outstanding(self) -> int:
        """Tasks queued here or held by managers."""
        return self.state.outstanding()

    def snapshot(self) -> dict:
        """Managers, workers and tasks, for the endpoint's status (with each
        manager's hardware report: endpoint.hardware_report)."""
        return self.hardware.annotate(self.state.snapshot())

    def busy_blocks(self) -> set[str]:
        """Blocks whose managers hold tasks (not to be scaled in)."""
        return self.state.busy_blocks()

    # -------------------------------------------------------------- messages
    def _origin(self, mid: bytes, m: ManagerState | None = None) -> str:
        """Who sent a message, for the log: manager id and, once known, host."""
        m = m if m is not None else self.state.managers.get(mid)
        name = mid[:64].decode(errors="replace")
        return f"manager {name!r}" + (f" on {m.hostname!r}" if m is not None else "")

    def _on_manager_safe(self, frames: list[bytes]) -> None:
        """Handle one manager message; whatever it holds, never raise."""
        try:
            self._on_manager(frames)
        except ProtocolError as e:
            self.state.handle(BadMessage(frames[0]))
            log.error("dropping bad message from %s: %s", self._origin(frames[0]), e)
        except Exception as e:
            self.state.handle(BadMessage(frames[0]))
            log.exception("dropping message from %s that could not be handled: %s",
                          self._origin(frames[0]), type(e).__name__)

    def _on_manager(self, frames: list[bytes]) -> None:
        """Decode one message into its event; carry out what the state answers."""
        mid = frames[0]
        msg = unpack(frames[1:])
        now = time.monotonic()
        kind = msg.kind
        event: Event
        if kind == Kind.RESULTS:
            # an unregistered manager's batch is refused unread
            results = unpack_results(msg) if mid in self.state.managers else []
            event = ResultsFrom(mid, results, now)
        elif kind == Kind.RUNNING:
            event = RunningFrom(mid, msg.header, now)
        elif kind == Kind.HEARTBEAT:
            event = HeartbeatFrom(mid, msg.header, now)
            self.hardware.beat(mid, msg.header)
        elif kind == Kind.REGISTER:
            event = ManagerRegistered(mid, msg.header, now)
            self.hardware.registered(mid, msg.header)
        else:
            event = StrayMessage(mid, kind, now)
        self._do(self.state.handle(event))

    # ---------------------------------------------------------- instructions
    def _do(self, instructions: list) -> None:
        carry_out = self._carry_out
        for ins in instructions:
            carry_out[type(ins)](ins)

    def _send_tasks(self, ins: SendTasks) -> None:
        try:
            blobs.send(self.router, [ins.mid, *pack_tasks(ins.tasks)])  # large frames: no copy
        except zmq.ZMQError as e:  # manager vanished between poll and send
            log.warning("cannot send to %s: %s", self._origin(ins.mid), e)
            self._do(self.state.handle(SendFailed(ins.mid, ins.tasks)))

    def _send_heartbeat(self, ins: SendHeartbeat) -> None:
        t = time.time()
        for mid in ins.mids:
            acked = ins.acked.get(mid)
            beat = pack(Kind.HEARTBEAT, {"t": t} if acked is None else {"t": t, "acked": acked})
            try:
                self.router.send_multipart([mid, *beat])
            except zmq.ZMQError:
                pass

    def _output(self, ins: Output) -> None:
        self._outbox.extend(ins.items)  # handed over once per loop step (_flush_output)

    def _flush_output(self) -> None:
        """Hand the agent what this loop step produced, in one call (one
        wake-up of its writer, not one per message)."""
        if self._outbox:
            out, self._outbox = self._outbox, []
            self.on_output(out)

    def _dropped(self, ins: Dropped) -> None:
        ids = f": {', '.join(ins.task_ids[:10])}" if ins.task_ids else ""
        level = logging.DEBUG if ins.routine else logging.WARNING
        log.log(level, "%s %s%s", self._origin(ins.mid), ins.why, ids)

    def _registered(self, ins: Registered) -> None:
        m = ins.manager
        log.info("manager %s %sregistered (%s, %s workers on %s)",
                 m.manager_id.decode(errors="replace"), "re-" if ins.again else "",
                 "started by hand" if m.manager_id in self.state.hand_started
                 else f"block {m.block_id}", m.workers, m.hostname)
        if ins.kept or ins.reattached or ins.refused or ins.awaited or ins.requeued:
            log.info("manager %s holds %d task(s): %d still its own, %d re-attached "
                     "(%d retries refunded), %d refused (run elsewhere or finished), %d not "
                     "handed over yet; %d it never got queued again",
                     m.manager_id.decode(errors="replace"),
                     len(ins.kept) + len(ins.reattached) + len(ins.refused) + len(ins.awaited),
                     len(ins.kept), len(ins.reattached), ins.refunded, len(ins.refused),
                     len(ins.awaited), len(ins.requeued))

    def _send_cancel(self, ins: SendCancel) -> None:
        log.info("cancelling %d task(s) on %s: %s", len(ins.task_ids), self._origin(ins.mid),
                 ", ".join(ins.task_ids[:10]))
        try:
            self.router.send_multipart([ins.mid, *pack(Kind.CANCEL, ins.task_ids)])
        except zmq.ZMQError as e:  # gone: its tasks end with it (they are off its books)
            log.warning("cannot send a cancel to %s: %s", self._origin(ins.mid), e)

    def _ask_register(self, ins: AskRegister) -> None:
        try:
            self.router.send_multipart([ins.mid, *pack(Kind.REREGISTER)])
        except zmq.ZMQError:  # its connection is gone: it reconnects by itself
            pass

    def _stalled(self, ins: Stalled) -> None:
        log.warning("the interchange did not run for %.1fs (its process was stopped or "
                    "starved); managers get a full heartbeat threshold to answer again",
                    ins.seconds)

    def _lost(self, ins: Lost) -> None:
        m = ins.manager
        if m.block_id in self.retired_blocks and not m.tasks:
            log.info("%s of scaled-in block %s ended", self._origin(m.manager_id, m), m.block_id)
            return
        log.error("%s silent for %.1fs: declared lost with %d tasks (%d to run again)",
                  self._origin(m.manager_id, m), ins.silent_for, len(m.tasks), ins.retried)

    # ------------------------------------------------------------------ loop
    def _step(self, poller: zmq.Poller) -> None:
        for sock, _ in poller.poll(int(self.poll_period * 1000)):
            if sock is self.feed:
                while cast(int, self.feed.getsockopt(EVENTS)) & POLLIN:
                    self.feed.recv()
                while self.inbox:  # may answer with results that arrived first
                    self._do(self.state.handle(self.inbox.popleft()))
            else:
                while cast(int, self.router.getsockopt(EVENTS)) & POLLIN:
                    if not self._may_read():
                        break
                    self._on_manager_safe(blobs.recv(self.router))
        self._do(self.state.handle(Tick(time.monotonic())))
        self._flush_output()

    def _may_read(self) -> bool:
        """Whether the read budget allows one more manager message now; when it
        is spent, wait (up to a poll period) for it to refill instead."""
        if not self._rate:
            return True
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1.0:
            self.stats["throttled"] = self.stats.get("throttled", 0) + 1
            self.stop_event.wait(min(self.poll_period, (1.0 - self._tokens) / self._rate))
            return False
        self._tokens -= 1.0
        return True

    def run(self) -> None:
        """The loop: until :attr:`stop_event`; nothing a manager sends ends it."""
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.feed, zmq.POLLIN)
        while not self.stop_event.is_set():
            try:
                self._step(poller)
            except Exception:
                self.stats["loop_errors"] += 1
                log.exception("interchange loop error; continuing")
                self.stop_event.wait(self.poll_period)
        self._flush_output()
        self._shutdown_managers()

    def _shutdown_managers(self) -> None:
        """Tell the managers the endpoint started to end; hand-started ones are
        left running, to reconnect to the next start."""
        for mid in self.state.block_managers():
            try:
                self.router.send_multipart([mid, *pack(Kind.SHUTDOWN)])
            except zmq.ZMQError:
                pass

    def close(self) -> None:
        self.router.close(linger=500)
        self.feed.close()
        self.auth.stop()
        if self.local_dir is not None:
            local_socket.remove(self.local_dir)
