"""``FuncXExecutor``: a ``concurrent.futures.Executor`` over a funcX endpoint.

``submit`` returns a future at once.  A submit thread coalesces queued
submissions into batch requests (one goes out at once when it is alone); a
watcher thread listens to the task group's completion events over one
streamed request (funcx.sdk.event_stream: results are pushed, no per-task
request, no fixed-interval polling) and completes futures as results arrive.
"""
from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import queue
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from funcx.defaults import setting
from funcx.errors import FuncxError
from funcx.protocol import error_codes
from funcx.protocol.retry import build_policy, policy_key
from funcx.sdk.blobs import fetch_result, is_blob_result, serialize_payload
from funcx.sdk.cancel import cancel_answers
from funcx.sdk.dependencies import Held, find_futures
from funcx.sdk.event_stream import EventStream
from funcx.sdk.future import FuncXFuture
from funcx.sdk.results import task_output, task_status
from funcx.sdk.task_options import TaskOptions
from funcx.sdk.web_client import WebClient, retry_pause
from funcx.serialize import FuncXSerializer
from funcx.serialize.choice import Strategylike, import_paths

log = logging.getLogger("funcx.executor")
LONGPOLL_S = 20.0
#: the watcher's own backoff after a failed long-poll without Retry-After (first, most)
WATCH_BACKOFF_S = (0.5, 10.0)
#: the longest the watcher waits on a service's Retry-After before polling again
RETRY_AFTER_MAX_S = 60.0


#: options of earlier FuncXExecutor generations that have no meaning here, and why;
#: accepted (a script written for them runs) with one warning
IGNORED_OPTIONS = {
    "batch_enabled": "submissions are always coalesced into batch requests",
    "batch_interval": "the submit thread sends whatever has queued as soon as the "
                      "previous request is answered",
    "poll_interval": "results are pushed over a stream of events, not polled",
    "heartbeat_period": "the service's stream of results sends its own heartbeats",
    "results_ws_uri": "results come over the service's HTTPS event stream, not a web "
                      "socket or AMQP",
    "warn_about_url_mismatch": "there is no separate results URL to compare",
}


class FuncXExecutor(cf.Executor):
    """A ``concurrent.futures.Executor`` over one funcX endpoint (funcX 1.x signature).

    ``endpoint_id`` (an id, or the name of an endpoint you may use: resolved
    when set, so an unknown or ambiguous name raises at once, naming the
    candidates) and ``task_group_id`` may be changed between submits;
    ``container_id`` registers submitted functions with that container;
    ``funcx_client`` (or ``client``) is the client to use (default: a new
    ``FuncXClient()``); ``batch_size`` caps the tasks of one submit request.
    ``serializer`` (a ``ComputeSerializer``) serializes functions and arguments
    (default: the client's, switched to strategies the endpoint allows when its
    metadata lists ``allowed_serializers``); ``result_serializers`` (e.g.
    ``[JSONData()]``) are what the endpoint serializes results with, the first
    that can (README "Serializers").
    """

    def __init__(self, endpoint_id: str | None = None, container_id: str | None = None,
                 funcx_client: Any = None, task_group_id: str | None = None, label: str = "",
                 batch_size: int = 1000, *, client: Any = None, retries: int = 0,
                 retry_on: Any = None,
                 serializer: FuncXSerializer | None = None,
                 result_serializers: list[Strategylike] | None = None,
                 resource_specification: dict | None = None,
                 user_endpoint_config: dict | None = None, **kwargs: Any):
        from funcx.sdk.client import FuncXClient

        unknown = set(kwargs) - set(IGNORED_OPTIONS)
        if unknown:
            import inspect

            from funcx.sdk.names import unexpected_keywords

            known = [*inspect.signature(FuncXExecutor.__init__).parameters, *IGNORED_OPTIONS]
            raise unexpected_keywords("FuncXExecutor()", unknown, known)
        if kwargs:
            warnings.warn(
                "FuncXExecutor: accepted and ignored here: " + "; ".join(
                    f"{k} ({IGNORED_OPTIONS[k]})" for k in sorted(kwargs)),
                UserWarning, stacklevel=2)
        self.client = client or funcx_client or FuncXClient()
        self.endpoint_id = endpoint_id
        self.container_id = container_id
        self.label = label
        self.task_group_id = task_group_id or str(uuid.uuid4())
        self.batch_size = max(1, int(batch_size))
        #: every task's retry policy unless options() says otherwise (README "Retries")
        self.retry_policy = build_policy(retries, retry_on)
        #: tasks waiting for futures among their arguments (funcx.sdk.dependencies)
        self._held: set[FuncXFuture] = set()
        #: the serializer of functions and arguments (None: the client's, adapted
        #: to the endpoint's allowed_serializers: FuncXClient.serializer_for)
        self.serializer = serializer
        self.result_serializers = result_serializers
        #: what each task asks of the endpoint (Globus Compute's attribute), e.g.
        #: {"num_nodes": 2, "ranks_per_node": 4} for an MPIFunction, {"walltime": 60};
        #: each task gets the value set when it is submitted (README "MPI functions")
        self.resource_specification = resource_specification
        #: a multi-user endpoint's template values (Globus Compute's attribute), checked
        #: at submit against its schema; read when the submit thread sends
        self.user_endpoint_config = user_endpoint_config
        self.task_count_submitted = 0
        self._functions: dict[int, tuple[Callable, str]] = {}
        self._queue: queue.Queue = queue.Queue()
        self._pending: dict[str, FuncXFuture] = {}
        self._lock = threading.Condition()
        self._in_flight = 0  # submissions handed to the submit thread, not yet mapped
        self._sending: list[FuncXFuture] = []  # the futures of the request being sent
        self._early: dict[str, dict] = {}  # results that arrived before their task id was known
        self._group_exists = task_group_id is not None  # a given group may already exist
        self._shutdown = False
        self._cursor = "0"
        self._stream: EventStream | None = None  # the watcher's open events stream
        # its own connections: one for submitting, one for the long-poll; the
        # executor batches by design, so the client's request throttle does not apply
        self._submit_web = WebClient(self.client.funcx_service_address, self.client._token,
                                     wait_out_429=True)
        self._watch_web = WebClient(self.client.funcx_service_address, self.client._token)
        self._submitter = threading.Thread(target=self._submit_loop, daemon=True,
                                           name="funcx-submit")
        self._watcher = threading.Thread(target=self._watch_loop, daemon=True, name="funcx-watch")
        self._submitter.start()
        self._watcher.start()

    @property
    def endpoint_id(self) -> str | None:
        """The endpoint tasks go to (its id, also when it was set by name)."""
        return self._endpoint_id

    @endpoint_id.setter
    def endpoint_id(self, value: str | None) -> None:
        self._endpoint_id = self.client.resolve_endpoint(value) if value else value

    @property
    def result_serializers(self) -> list[str] | None:
        """Strategy import paths the endpoint serializes each result with, the
        first that can (set with instances, classes or paths; None: the default)."""
        return self._result_serializers

    @result_serializers.setter
    def result_serializers(self, value: list[Strategylike] | None) -> None:
        self._result_serializers = import_paths(value) or None

    def _serializer(self) -> FuncXSerializer:
        if self.serializer is not None:
            return self.serializer
        if not self.endpoint_id or not hasattr(self.client, "serializer_for"):
            return self.client.fx_serializer
        return self.client.serializer_for(self.endpoint_id)

    @property
    def funcx_client(self) -> Any:
        """The client this executor submits through (funcX 1.x name)."""
        return self.client

    def __repr__(self) -> str:
        label = f" label={self.label!r}" if self.label else ""
        return (f"<FuncXExecutor{label} endpoint_id={self.endpoint_id}"
                f" task_group_id={self.task_group_id}>")

    # ------------------------------------------------------------- submitting
    def register_function(self, fn: Callable, function_id: str | None = None,
                          **kwargs: Any) -> str:
        """Register ``fn`` once per executor (cached by identity); with
        ``function_id`` (an id or a name of yours), use that registered function
        for ``fn`` instead.  Registering is cheap across runs and processes: the
        service answers the same content with the same id (no duplicate)."""
        cached = self._functions.get(id(fn))
        if function_id is None and cached is not None and cached[0] is fn:
            return cached[1]
        if function_id is None:
            if self.container_id and "container_uuid" not in kwargs:
                kwargs["container_uuid"] = self.container_id
            kwargs.setdefault("serializer", self._serializer())
            function_id = self.client.register_function(fn, **kwargs)
        else:
            function_id = self.client.resolve_function(function_id)
        self._functions[id(fn)] = (fn, function_id)
        return function_id

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> FuncXFuture:
        if self._shutdown:
            raise RuntimeError("cannot submit to a FuncXExecutor after shutdown")
        if not self.endpoint_id:
            raise ValueError("FuncXExecutor.endpoint_id is not set")
        fid = self.register_function(fn)
        return self._submit(fid, args, kwargs, self.retry_policy,
                            getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None))

    def submit_to_registered_function(self, function_id: str, args: tuple | None = None,
                                      kwargs: dict | None = None) -> FuncXFuture:
        """Submit a task of an already registered function (funcX 1.x); by id,
        or by a name of yours (its latest version, or ``NAME@N``)."""
        return self._submit(function_id, args, kwargs, self.retry_policy, None)

    def _submit(self, function_id: str, args: tuple | None, kwargs: dict | None,
                policy: dict, name: str | None) -> FuncXFuture:
        """A future for one task, queued for the submit thread at once, or held
        until the futures among its arguments are done (funcx.sdk.dependencies)."""
        if self._shutdown:
            raise RuntimeError("cannot submit to a FuncXExecutor after shutdown")
        if not self.endpoint_id:
            raise ValueError("FuncXExecutor.endpoint_id is not set")
        function_id = self.client.resolve_function(function_id)
        fut = FuncXFuture()
        fut._executor = self
        fut.function_name = name or function_id
        # what the task asks of the endpoint, as set when it was submitted
        fut._resource_specification = dict(self.resource_specification or {})
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        deps = find_futures(args, kwargs)
        if not deps:
            self._enqueue(fut, self.endpoint_id, function_id, args, kwargs, policy)
            return fut
        eid = self.endpoint_id
        with self._lock:
            self._held.add(fut)
        Held(fut, args, kwargs, deps,
             release=lambda a, k: self._enqueue(fut, eid, function_id, a, k, policy, False),
             fail=lambda e: fut._finish(exc=e), done=lambda: self._unhold(fut))
        return fut

    def _enqueue(self, fut: FuncXFuture, eid: str, function_id: str, args: tuple,
                 kwargs: dict, policy: dict, direct: bool = True) -> None:
        """Serialize a task's arguments and hand it to the submit thread; an
        argument that cannot be serialized raises (``direct``: at submit) or
        fails the future (a released dependent)."""
        try:
            payload = serialize_payload(self._serializer(), args, kwargs)  # large: raw frames
        except Exception as e:
            if direct:
                raise
            fut._finish(exc=e)
            return
        with self._lock:
            self._in_flight += 1
            if self._in_flight == 1 and not self._pending and self._group_exists:
                self._lock.notify_all()  # the watcher starts its long-poll alongside the submit
        self._queue.put((fut, eid, function_id, payload, policy))

    def _unhold(self, fut: FuncXFuture) -> None:
        """A held task was submitted, failed or cancelled: the last one lets a
        shut-down executor's submit thread end."""
        with self._lock:
            self._held.discard(fut)
            last = not self._held and self._shutdown
            self._lock.notify_all()
        if last:
            self._queue.put(None)

    def options(self, *, retries: int | None = None, retry_on: Any = None) -> TaskOptions:
        """This executor with other options for the tasks submitted through the
        returned view (``fxe.options(retries=3).submit(f, x)``), leaving the
        function's own keyword arguments alone (Ray's ``.options``)."""
        return TaskOptions(self, build_policy(retries, retry_on) if retries is not None
                           else self.retry_policy)

    def _submit_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            items = [item]
            while len(items) < self.batch_size:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                items.append(nxt)
            self._submit_batch(items)

    def _submit_batch(self, items: list) -> None:
        """Submit coalesced items through the client's one submit path (which
        splits what is over the service's cap); futures get their task ids as
        each request is answered."""
        live = [it for it in items if not it[0].cancelled()]
        with self._lock:
            self._sending = [it[0] for it in live]
        try:
            # one request per endpoint, retry policy and resource specification
            by_ep: dict[tuple, list] = {}
            for it in live:
                spec = sorted(it[0]._resource_specification.items())
                by_ep.setdefault((it[1], policy_key(it[4]), repr(spec)), []).append(it)
            for (eid, _, _), its in by_ep.items():
                self.client.submit_tasks(
                    eid, [(it[2], it[3]) for it in its], task_group_id=self.task_group_id,
                    web_client=self._submit_web, result_serializers=self.result_serializers,
                    resource_specification=its[0][0]._resource_specification or None,
                    user_endpoint_config=self.user_endpoint_config or None,
                    retry_policy=its[0][4], on_chunk=functools.partial(self._submitted, its))
        except Exception as e:  # noqa: BLE001 - any failure of a request fails its futures
            for it in live:
                if it[0].task_id is None and not it[0].done():
                    it[0]._finish(exc=e)
        finally:
            with self._lock:
                self._sending = []
                self._in_flight -= len(items)
                if not self._in_flight:
                    self._early.clear()  # ids no submission of ours can claim any more
                self._lock.notify_all()

    def _submitted(self, items: list, start: int, ids: list[str]) -> None:
        """Hand the task ids of one answered request to their futures; the
        tasks of futures cancelled while their submit was in flight are
        cancelled on the service (in one request) rather than watched."""
        early, cancelled = [], []
        with self._lock:  # never held across a request
            for it, tid in zip(items[start:start + len(ids)], ids):
                it[0].task_id = tid
                it[0].submitted.set()
                doc = self._early.pop(tid, None)
                if it[0].cancelled():
                    cancelled.append(tid)
                elif doc is None:
                    self._pending[tid] = it[0]
                else:  # its result arrived before we knew its id
                    early.append((it[0], doc))
            self.task_count_submitted += len(ids)
            self._group_exists = True
        self._finish_all(early)
        if cancelled:
            self._cancel_remote(cancelled)

    def _cancel_remote(self, task_ids: list[str]) -> dict[str, dict]:
        """Cancel tasks on the service in batches (funcx.sdk.cancel); their
        answers, or {} when the service could not be asked (logged)."""
        try:
            return cancel_answers(self.client, task_ids, web=self._submit_web)
        except FuncxError as e:
            log.warning("could not cancel %d task(s) on the service (%s): they may still run",
                        len(task_ids), e)
            return {}

    # --------------------------------------------------------------- watching
    def _watch_loop(self) -> None:
        backoff = WATCH_BACKOFF_S[0]
        while True:
            with self._lock:
                # until the service has the task group, wait for a submit to create it
                while not self._pending and not (self._in_flight and self._group_exists) \
                        and not (self._shutdown and not self._held):
                    self._lock.wait()
                if self._shutdown and not self._pending and not self._in_flight \
                        and not self._held:
                    return
            try:  # failures, 429s included, are waited out below
                self._listen()
                backoff = WATCH_BACKOFF_S[0]
            except FuncxError as e:
                if getattr(e, "code", None) == error_codes.TASK_GROUP_NOT_FOUND \
                        and not self._pending:
                    with self._lock:  # not created yet: the first submit will create it
                        self._group_exists = False
                    continue
                # the service's Retry-After (a 429: too many long-polls) where it
                # gave one, else our own backoff; bounded either way
                pause = min(retry_pause(e, backoff), RETRY_AFTER_MAX_S)
                if getattr(e, "retry_after", None) is None:
                    backoff = min(backoff * 2, WATCH_BACKOFF_S[1])
                log.log(logging.INFO if getattr(e, "http_status", None) == 429
                        else logging.WARNING,
                        "waiting for results failed (%s); retrying in %.1f s", e, pause)
                self._pause(pause)

    def _idle(self) -> bool:  # nothing to watch: no task unfinished or on its way
        with self._lock:
            return not self._pending and not self._in_flight and not self._held

    def _listen(self) -> None:
        """One events stream, until it ends (its timeout) or, at a heartbeat, nothing
        is left to watch: open between tasks that follow closely, a lone task's
        result comes on a request already waiting."""
        self._stream = stream = EventStream(
            self._watch_web, f"/v2/taskgroup/{self.task_group_id}/events",
            {"after": self._cursor, "timeout": LONGPOLL_S, "blobs": 1},  # large results: refs
            LONGPOLL_S + 30, stream=bool(setting("EXECUTOR_EVENT_STREAM")))
        try:
            for answer in stream:
                if answer is None:  # a heartbeat
                    if self._idle():
                        return
                    continue
                self._cursor = answer.last_id
                self._complete(answer.tasks)
                if self._shutdown and self._idle():
                    return
        finally:
            stream.close()

    def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` before the next long-poll: a submit's notify does not
        cut it short (no spinning), only a shutdown with nothing left to watch."""
        deadline = time.monotonic() + seconds
        with self._lock:
            while not (self._shutdown and not self._pending and not self._in_flight
                       and not self._held):
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._lock.wait(left)

    def _complete(self, docs: list[dict]) -> None:
        futs = []
        with self._lock:
            for d in docs:
                fut = self._pending.pop(d["task_id"], None)
                if fut is not None:
                    futs.append((fut, d))
                elif self._in_flight:  # maybe a task whose submit answer is still on its way
                    self._early[d["task_id"]] = d
            self._lock.notify_all()
        self._finish_all(futs)

    def _finish_all(self, futs: list) -> None:
        for fut, doc in futs:
            if fut is None or fut.done():
                continue
            fut._output = task_output(doc)
            fut.attempts = doc.get("attempts")
            try:
                if is_blob_result(doc):  # its bytes fetched here, outside the lock
                    fut._finish(fetch_result(self._watch_web, doc["task_id"],
                                             self.client.fx_serializer))
                    continue
                st = task_status(doc, self.client.fx_serializer)
            except Exception as e:  # noqa: BLE001 - a result this side cannot deserialize
                fut._finish(exc=e)
                continue
            if st["status"] == "cancelled":  # by anyone (the CLI too): cancelled here
                cf.Future.cancel(fut)  # without asking the service again
            elif "exception" in st:
                fut._finish(exc=st["exception"])
            else:
                fut._finish(st.get("result"))

    def get_worker_hardware_details(self) -> str:
        """Globus Compute's: run :func:`funcx.sdk.hardware.run_hardware_report`
        on a worker of this executor's endpoint and return its text (the host,
        CPU model, cores, affinity, memory and accelerators that worker sees).
        ``FuncXClient.get_worker_hardware_details`` answers for every worker
        without running a task."""
        from funcx.sdk.hardware import run_hardware_report

        return str(self.submit(run_hardware_report, "funcX endpoint worker").result())

    # ------------------------------------------------------------- lifecycle
    def reload_tasks(self) -> list[FuncXFuture]:
        """Futures for every task of this executor's task group: finished ones
        complete at once, the rest are watched."""
        tasks = self.client.get_taskgroup_tasks(self.task_group_id)
        futures = []
        with self._lock:
            for t in tasks:
                fut = self._pending.get(t["id"])
                if fut is None:
                    fut = FuncXFuture(t["id"])
                    fut._executor = self
                self._pending[t["id"]] = fut
                futures.append(fut)
            self._cursor = "0"  # replay completions; known results complete at once
            self._lock.notify_all()
        if futures:
            resp = self._submit_web.post("/v2/batch_status",
                                         {"task_ids": [f.task_id for f in futures]})
            done = [d for d in resp["results"].values()
                    if d.get("status") in ("success", "failed", "cancelled")]
            self._complete(done)
        return futures

    def _cancel_all(self) -> None:
        """Cancel every future not done: those held for their dependencies and
        those queued for the submit thread here (they are never submitted),
        submitted ones on the service in batches (one request per
        FUNCX_BATCH_STATUS_MAX ids, not one per future), and those whose
        submit is in flight as their ids arrive (:meth:`_submitted`)."""
        with self._queue.mutex:
            queued = [it[0] for it in self._queue.queue if it is not None]
        with self._lock:
            local = [*self._held, *queued, *(f for f in self._sending if f.task_id is None)]
            remote = dict(self._pending)
        for f in local:
            f.cancel()
        answers = self._cancel_remote(list(remote))
        gone = [tid for tid, a in answers.items() if a.get("cancelled") and tid in remote]
        with self._lock:  # cancelled futures are not waited for
            for tid in gone:
                self._pending.pop(tid, None)
            self._lock.notify_all()
        for tid in gone:
            cf.Future.cancel(remote[tid])  # without asking the service again

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            self._cancel_all()
        with self._lock:  # the submit thread ends once no task waits for its dependencies
            self._shutdown = True
            last = not self._held
        if last:
            self._queue.put(None)
        if wait:
            self._submitter.join()
            with self._lock:
                while self._pending or self._in_flight or self._held:
                    self._lock.wait()
        with self._lock:
            self._lock.notify_all()
        if self._stream is not None and self._idle():  # free its long-poll slot now
            self._stream.close()
