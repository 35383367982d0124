"""``FuncXClient``: register functions, run them on endpoints, fetch results."""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from funcx.defaults import setting
from funcx.errors import (
    FuncxAPIError,
    ServiceUnreachable,
    TaskPending,
    VersionMismatch,
    api_error,
)
from funcx.protocol import error_codes
from funcx.sdk import blobs as sdk_blobs
from funcx.sdk.batch import Batch
from funcx.sdk.cancel import cancel_answers, cancelled_or_raise
from funcx.sdk.compat import (
    FUNCX_SCOPE,
    warn_asynchronous,
    warn_ignored_arguments,
)
from funcx.sdk.endpoints import EndpointsMixin
from funcx.sdk.functions import FunctionsMixin
from funcx.sdk.limits import check_request_size, chunks, payload_bytes
from funcx.sdk.login import (
    AuthorizerLoginManager,
    LocalLoginManager,
    StaticTokenLoginManager,
    bearer_from_authorizer,
    default_login_manager,
    from_globus_compute_manager,
)
from funcx.sdk.names import require_ids
from funcx.sdk.reprs import FunctionSearchResults, SearchResults, TaskStatus
from funcx.sdk.results import task_status
from funcx.sdk.service_address import resolve_service_address
from funcx.sdk.sharing import SharingMixin
from funcx.sdk.throttling import Throttle
from funcx.sdk.web_client import WebClient
from funcx.serialize import FuncXSerializer
from funcx.serialize.choice import Strategylike, fit, import_paths
from funcx.version import __version__


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in v.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


class FuncXClient(EndpointsMixin, FunctionsMixin, SharingMixin):
    """The funcX SDK client.

    ``FuncXClient()`` with no arguments talks to the service recorded by
    ``funcx service start`` on this machine (or ``FUNCX_SERVICE_ADDRESS``)
    with the locally stored token.

    The documents' constructor arguments: ``http_timeout``, ``funcx_home``
    (act as the user whose credentials are stored under that directory, on the
    service recorded there), ``force_login``, ``fx_authorizer`` (a
    globus_sdk-style authorizer giving the bearer token), ``login_manager``
    (ours, funcX 1.0's or Globus Compute's shape), ``funcx_service_address``.
    ``search_authorizer`` and ``openid_authorizer`` are accepted and warned
    about (no Globus Search or OpenID here); so is any other keyword.
    """

    FUNCX_SCOPE = FUNCX_SCOPE
    FUNCXSCOPE = FUNCX_SCOPE  # the Globus Compute guide's spelling
    CLIENT_ID = "4cf29807-cf21-49ec-9443-ff9a3fb9f81c"  # funcX's public one (unused here)
    TOKEN_FILENAME = "token.json"

    def __init__(self, funcx_service_address: str | float | None = None, *,
                 login_manager: Any = None, access_token: str | None = None,
                 http_timeout: float | None = None, do_version_check: bool = True,
                 task_group_id: str | None = None, force_login: bool = False,
                 funcx_home: str | os.PathLike | None = None, fx_authorizer: Any = None,
                 code_serialization_strategy: Strategylike | None = None,
                 data_serialization_strategy: Strategylike | None = None,
                 **kwargs: Any):
        address_arg: str | None
        if isinstance(funcx_service_address, (int, float)):
            # the 0.x signature's first positional argument is http_timeout
            http_timeout, address_arg = float(funcx_service_address), None
        else:
            address_arg = funcx_service_address
        warn_ignored_arguments(kwargs)
        home = Path(funcx_home).expanduser() if funcx_home is not None else None
        if home is not None:
            self.TOKEN_DIR = str(home / "credentials")
        if address_arg is None and home is not None and not str(setting("SERVICE_ADDRESS")):
            address_arg = LocalLoginManager(home).service_url()
        self.funcx_service_address = resolve_service_address(address_arg)
        self._own_manager = login_manager is None
        if login_manager is None:
            if access_token:
                login_manager = StaticTokenLoginManager(access_token)
            elif fx_authorizer is not None:
                login_manager = AuthorizerLoginManager(fx_authorizer)
            else:
                login_manager = default_login_manager(self.funcx_service_address, home)
        self.login_manager = login_manager
        self._token_source: Any = login_manager
        if force_login:
            login_manager.ensure_logged_in()
        if hasattr(login_manager, "get_token"):
            self.web_client = WebClient(self.funcx_service_address, self._token, http_timeout)
        elif hasattr(login_manager, "get_funcx_web_client"):  # funcX 1.0 style manager
            self.web_client = login_manager.get_funcx_web_client(
                base_url=self.funcx_service_address)
        elif hasattr(login_manager, "get_web_client"):  # the Globus Compute guide's shape
            self._token_source = from_globus_compute_manager(
                login_manager, self.funcx_service_address)
            self.web_client = WebClient(self.funcx_service_address, self._token, http_timeout)
        else:
            raise TypeError(f"login_manager {type(login_manager).__name__} has none of "
                            "get_token(), get_funcx_web_client(base_url=...) or "
                            "get_web_client(base_url=...)")
        if isinstance(self.web_client, WebClient):  # a busy service's 429s are waited out
            self.web_client.wait_out_429 = True
        self.throttle = Throttle()
        # request counting here; request size on the serialized data (see payload_bytes),
        # in register_function and submit_tasks
        self.web_client.request_hooks.append(
            lambda method, path, size: self.throttle.check(method, path, 0))
        # Globus Compute's keywords: the strategies for functions / arguments
        # (instances, classes or import paths; README "Serializers")
        self.fx_serializer = FuncXSerializer(code_serialization_strategy,
                                             data_serialization_strategy)
        self._ep_serializers: dict[str, FuncXSerializer] = {}  # see serializer_for
        self.session_task_group_id = task_group_id or str(uuid.uuid4())
        self.func_table: dict[str, dict] = {}  # results fetched this session, by task id
        self._names: dict[tuple[str, str], tuple[float, str]] = {}  # name -> id, a while
        self._task_groups: dict[str, str] = {}  # task id -> its task group
        #: tasks one submit request may carry: the service's ``max_tasks_per_submit``
        #: (GET /v2/version) where it reports one, else MAX_TASKS_PER_SUBMIT; larger
        #: batches are split (set it lower to split sooner)
        self.max_tasks_per_submit = int(setting("MAX_TASKS_PER_SUBMIT"))
        if do_version_check:
            self.version_check()

    TOKEN_DIR = "$FUNCX_HOME/credentials"

    def _token(self) -> str | None:
        """The bearer token (also what the executor's own connections send)."""
        if hasattr(self._token_source, "get_token"):
            return self._token_source.get_token()
        web = self.web_client  # a funcX 1.0 login manager's client
        if isinstance(web, WebClient):
            return web.token
        authorizer = getattr(web, "authorizer", None)
        return bearer_from_authorizer(authorizer) if authorizer is not None else None

    @property
    def throttling_enabled(self) -> bool:
        return self.throttle.enabled

    @throttling_enabled.setter
    def throttling_enabled(self, value: bool) -> None:
        self.throttle.enabled = bool(value)

    def logout(self) -> Any:
        """Revoke this client's token on the service and forget it locally.

        A Globus-Compute-shaped login manager's token is its own: only its
        ``logout()`` is called (the guide's may refuse, as it likes)."""
        if self._token_source is not self.login_manager:
            return self.login_manager.logout()
        try:
            self.web_client.post("/v2/logout")
        except FuncxAPIError:
            pass  # already invalid: nothing to revoke
        return self.login_manager.logout()

    def whoami(self) -> dict:
        return self.web_client.get("/v2/whoami")

    # ---------------------------------------------------------------- service
    def version_check(self, endpoint_version: str | None = None) -> None:
        """Raise ``VersionMismatch`` if this SDK is older than the service allows."""
        data = self.get_version()
        min_sdk = data.get("min_sdk_version", "0")
        if _version_tuple(__version__) < _version_tuple(min_sdk):
            raise VersionMismatch(__version__, min_sdk)
        if endpoint_version is not None:
            min_ep = data.get("min_ep_version", "0")
            if _version_tuple(endpoint_version) < _version_tuple(min_ep):
                raise VersionMismatch(endpoint_version, min_ep, what="endpoint")

    def get_version(self) -> dict:
        """The service's versions and limits (and note its submit cap, if it reports one)."""
        data = self.web_client.get("/v2/version", params={"service": "all"})
        cap = data.get("max_tasks_per_submit") if isinstance(data, dict) else None
        if isinstance(cap, int) and cap > 0:
            self.max_tasks_per_submit = cap
        return data

    # -------------------------------------------------------------------- run
    def create_batch(self, task_group_id: str | None = None,
                     resource_specification: dict | None = None,
                     result_serializers: list[Strategylike] | None = None, *,
                     retries: int = 0, retry_on: Any = None,
                     user_endpoint_config: dict | None = None) -> Batch:
        """A :class:`Batch`; ``result_serializers``: the strategies (instances,
        classes or import paths) the endpoint serializes each result with, the
        first that can (e.g. ``[JSONData()]`` for results any language reads);
        ``retries`` / ``retry_on``: each task runs again on the endpoint, up to
        ``retries`` times, when it fails with one of the ``retry_on`` exception
        classes (or names; any exception when None): README "Retries";
        ``user_endpoint_config``: a multi-user endpoint's template values (README
        "Multi-user endpoints"), refused at submit when outside its schema."""
        return Batch(task_group_id=task_group_id or self.session_task_group_id,
                     resource_specification=resource_specification, serializer=self.fx_serializer,
                     result_serializers=import_paths(result_serializers) or None,
                     retries=retries, retry_on=retry_on,
                     user_endpoint_config=user_endpoint_config)

    def serializer_for(self, endpoint_id: str) -> FuncXSerializer:
        """A serializer whose strategies ``endpoint_id`` accepts: this client's
        own, unless the endpoint's metadata lists ``allowed_serializers`` that
        exclude them (then the first allowed code and data strategies).  Asked
        once per endpoint and client; an endpoint it cannot read gets the client's.
        While the service is unreachable the client's is used and nothing is
        remembered (an executor keeps taking submissions through an outage)."""
        eid = self.resolve_endpoint(endpoint_id)
        if eid not in self._ep_serializers:
            try:
                allowed = self.get_endpoint_metadata(eid).get("metadata", {}).get(
                    "allowed_serializers")
            except ServiceUnreachable:
                return self.fx_serializer
            except FuncxAPIError:
                allowed = None
            ser = self.fx_serializer
            mine = (ser.code_order[0] if ser.code_order else None, ser.data_order[0])
            chosen = fit(*mine, allowed if isinstance(allowed, list) else None)
            if chosen != mine:
                ser = FuncXSerializer(*chosen)
            self._ep_serializers[eid] = ser
        return self._ep_serializers[eid]


    def run(self, *args: Any, endpoint_id: str | None = None, function_id: str | None = None,
            result_serializers: list[Strategylike] | None = None, retries: int = 0,
            retry_on: Any = None, user_endpoint_config: dict | None = None,
            **kwargs: Any) -> str:
        """Run ``function_id`` on ``endpoint_id`` with the given arguments; return the task id.

        Both may be ids or names (your function's latest version, ``NAME@N``;
        an endpoint's name); a missing one is a ``TypeError`` that names a
        misspelling of it (``endpint=``) rather than passing it to the function.
        ``asynchronous=`` (a parameter of the 0.x reference) is taken by the
        client, not passed to the function: every run is asynchronous here
        (it returns the task id), so it is accepted with a warning.
        ``result_serializers``, ``retries``, ``retry_on`` and
        ``user_endpoint_config`` are the client's too
        (see :meth:`create_batch`): a function's own keyword of that name goes
        through ``Batch.add(..., kwargs={...})``."""
        require_ids("run()", endpoint_id, function_id, kwargs)
        if "asynchronous" in kwargs:
            warn_asynchronous("run")
            kwargs.pop("asynchronous")
        batch = self.create_batch(result_serializers=result_serializers, retries=retries,
                                  retry_on=retry_on, user_endpoint_config=user_endpoint_config)
        batch.add(*args, endpoint_id=endpoint_id, function_id=function_id, **kwargs)
        return self.batch_run(batch)[0]

    def map_run(self, *args: Any, endpoint_id: str | None = None,
                function_id: str | None = None, asynchronous: bool | None = None,
                **kwargs: Any) -> list[str]:
        """One task per item of the first argument (an iterable): the function
        gets ``(item, *args[1:], **kwargs)``; return the task ids in order.
        Ids or names, as :meth:`run`.
        ``asynchronous`` is accepted with a warning (every run is)."""
        require_ids("map_run()", endpoint_id, function_id, kwargs)
        if not args:
            raise TypeError("map_run needs an iterable of inputs as its first argument")
        if asynchronous is not None:
            warn_asynchronous("map_run")
        iterator: Iterable = args[0]
        rest = args[1:]
        batch = self.create_batch()
        for item in iterator:
            batch.add(item, *rest, endpoint_id=endpoint_id, function_id=function_id, **kwargs)
        return self.batch_run(batch)

    def batch_run(self, batch: Batch) -> list[str]:
        """Submit every task of ``batch`` (see :meth:`submit_tasks`: one request
        per endpoint, retry policy and chunk); return the task ids in the order
        the tasks were added."""
        ids: list[str] = [""] * len(batch.tasks)
        tg = batch.task_group_id or self.session_task_group_id
        chunk = int(setting("BATCH_SUBMIT_SIZE"))
        for (eid, _), positions in batch.by_submit().items():
            got = self.submit_tasks(
                eid, [(batch.tasks[i].function_id, batch.tasks[i].payload) for i in positions],
                task_group_id=tg, resource_specification=batch.resource_specification,
                chunk_size=chunk, result_serializers=batch.result_serializers,
                retry_policy=batch.policy_of(positions[0]),
                user_endpoint_config=batch.user_endpoint_config)
            for i, tid in zip(positions, got):
                ids[i] = tid
        return ids

    def submit_tasks(self, endpoint_id: str, tasks: Sequence[tuple[str, str]], *,
                     task_group_id: str | None = None,
                     resource_specification: dict | None = None,
                     chunk_size: int | None = None, web_client: WebClient | None = None,
                     on_chunk: Callable[[int, list[str]], None] | None = None,
                     result_serializers: list[str] | None = None,
                     retry_policy: dict | None = None,
                     user_endpoint_config: dict | None = None) -> list[str]:
        """Queue ``tasks`` — ``(function_id, serialized payload)`` pairs — on one
        endpoint; return their task ids in the same order.  The endpoint and
        the functions may be given by name.

        The one submit path of the SDK (``batch_run`` and ``FuncXExecutor`` both
        use it).  Tasks go in requests of at most ``chunk_size`` and never more
        than :attr:`max_tasks_per_submit`, so a batch of any size is accepted.
        Each request carries its own Idempotency-Key: a request retried after a
        restart or a reset connection queues its tasks only once; one paced by
        the service (429 with Retry-After: a spent task budget or a full quota,
        nothing queued) waits as told, for up to ``FUNCX_SUBMIT_RETRY_S``.
        ``on_chunk(start, ids)`` is called as each request is answered (the
        executor hands out task ids early); ``web_client`` sends on another
        connection than the client's own (the executor's, which is not throttled).
        """
        size = max(1, min(chunk_size or self.max_tasks_per_submit, self.max_tasks_per_submit))
        endpoint_id = self.resolve_endpoint(endpoint_id)
        fids = {f: self.resolve_function(f) for f in {f for f, _ in tasks}}
        if any(raw != fid for raw, fid in fids.items()):  # names (or non-canonical ids) given
            tasks = [(fids[f], p) for f, p in tasks]
        path = f"/v3/endpoints/{endpoint_id}/submit"
        tg = task_group_id or self.session_task_group_id
        ids: list[str] = []
        for start, stop in self._chunks(tasks, size, check=web_client is None):
            part = tasks[start:stop]
            first = part[0][0]
            payloads = [p for f, p in part if f == first]
            by_fn: dict[str, list[str]] = {first: payloads}
            if len(payloads) < len(part):  # more than one function
                by_fn = {}
                for fid, payload in part:
                    by_fn.setdefault(fid, []).append(payload)
            body: dict[str, Any] = {"tasks": by_fn, "task_group_id": tg, "create_queue": True}
            if resource_specification:
                body["resource_specification"] = resource_specification
            if result_serializers:  # import paths, the first that can serializes each result
                body["result_serializers"] = list(result_serializers)
            if retry_policy:  # funcx.protocol.retry: re-runs on the endpoint (README "Retries")
                body["retry_policy"] = retry_policy
            if user_endpoint_config:  # a multi-user endpoint's template values
                body["user_endpoint_config"] = user_endpoint_config
            headers = {"Idempotency-Key": str(uuid.uuid4())}
            send: dict[str, Any] = {"json_body": body}
            binary_body = sdk_blobs.submit_body(body)  # large inputs as raw frames
            if binary_body is not None and web_client is None \
                    and not isinstance(self.web_client, WebClient):  # a JSON-only transport
                body["tasks"] = {f: [sdk_blobs.inline(p) for p in ps] for f, ps in by_fn.items()}
            elif binary_body is not None:
                send = {"data": binary_body[0]}
                headers["Content-Type"] = binary_body[1]
            resp = self._robust("POST", path, idempotent=True, web=web_client,
                                retry_s=float(setting("SUBMIT_RETRY_S")), headers=headers, **send)
            if len(by_fn) == 1:  # the common case: one function, ids in order as sent
                got = list(next(iter(resp["tasks"].values())))
            else:
                returned = {fid: iter(tids) for fid, tids in resp["tasks"].items()}
                got = [next(returned[fid]) for fid, _ in part]
            ids.extend(got)
            if on_chunk is not None:
                on_chunk(start, got)
        return ids

    def _check_size(self, decoded: int, encoded: int, what: str) -> None:
        """The documented limit on one request, on the serialized data the user
        sent (see :func:`funcx.sdk.limits.check_request_size`), while throttling is on."""
        if self.throttling_enabled:
            check_request_size(decoded, encoded, self.throttle.max_request_size, what)

    def _chunks(self, tasks: Sequence[tuple[str, str]], size: int,
                check: bool) -> Iterable[tuple[int, int]]:
        """``(start, stop)`` of each submit request (see :func:`funcx.sdk.limits.chunks`):
        under the client's limit while throttling is on, else under the service's
        (FUNCX_MAX_PAYLOAD_BYTES, by the same measure), which refuses single tasks itself."""
        if self.throttling_enabled:
            return chunks(tasks, size, self.throttle.max_request_size, check)
        return chunks(tasks, size, int(setting("MAX_PAYLOAD_BYTES")), False)

    # ---------------------------------------------------------------- results
    def _update(self, doc: dict) -> dict:
        if doc.get("task_group_id"):
            self._task_groups[doc["task_id"]] = doc["task_group_id"]
        st = task_status(doc, self.fx_serializer)
        if not st["pending"]:
            self.func_table[doc["task_id"]] = st
        return st

    def get_task(self, task_id: str) -> dict:
        """``{"pending", "status", "result" | "exception", "completion_t"}``."""
        if task_id in self.func_table:
            return self.func_table[task_id]
        return self._update(self.web_client.get(f"/v2/tasks/{task_id}"))

    def get_task_status(self, task_id: str) -> TaskStatus:
        """The documented "status block containing a 'status' key" (a dict,
        as :meth:`get_task`).  It also compares equal to its status string,
        so ``get_task_status(t) == "success"`` keeps working."""
        return TaskStatus(self.get_task(task_id))

    def get_result(self, task_id: str) -> Any:
        """The task's return value; raises ``TaskPending`` while it runs and the
        function's own exception (with the remote traceback) if it failed."""
        st = self.get_task(task_id)
        if st["pending"]:
            raise TaskPending(st.get("reason", st["status"]))
        if "exception" in st:
            raise st["exception"]
        return st["result"]

    def get_batch_result(self, task_id_list: list[str]) -> dict[str, dict]:
        """Status of many tasks in one request (cached ones are not fetched again)."""
        return self._batch_result(task_id_list)

    def _robust(self, method: str, path: str, retry_s: float | None = None,
                web: WebClient | None = None, **kw: Any) -> Any:
        """A request retried while the service is briefly unavailable (see
        ``WebClient.request``), for up to ``retry_s`` (default HTTP_RETRY_S),
        on ``web`` if given, else on the client's own connection."""
        retry_s = float(setting("HTTP_RETRY_S")) if retry_s is None else retry_s
        return self._call(method, path, retry_s=retry_s, web=web, **kw)

    def _call(self, method: str, path: str, retry_s: float | None = None,
              web: WebClient | None = None, **kw: Any) -> Any:
        """A request on ``web`` or the client's own connection; ``retry_s`` as in
        ``WebClient.request`` (None: only a 429 is waited out, within HTTP_RETRY_S)."""
        if web is not None:
            return web.request(method, path, retry_s=retry_s, **kw)
        if not isinstance(self.web_client, WebClient):  # a funcX 1.0 login manager's client
            kw.pop("idempotent", None)
            kw.pop("headers", None)
            if method == "POST":
                return self.web_client.post(path, kw.pop("json_body", None), **kw)
            return self.web_client.get(path, **kw)
        return self.web_client.request(method, path, retry_s=retry_s, **kw)

    def _batch_result(self, task_id_list: list[str], throttle: bool = True,
                      retry_s: float | None = None) -> dict[str, dict]:
        out = {t: self.func_table[t] for t in task_id_list if t in self.func_table}
        todo = [t for t in task_id_list if t not in out]
        most = int(setting("BATCH_STATUS_MAX"))
        for start in range(0, len(todo), most):
            resp = self._call("POST", "/v2/batch_status",
                              json_body={"task_ids": todo[start:start + most]},
                              throttle=throttle, retry_s=retry_s, idempotent=True)
            for tid, doc in resp["results"].items():
                if doc.get("status") == "unknown":
                    raise api_error(404, error_codes.TASK_NOT_FOUND, f"task {tid} not found")
                out[tid] = self._update(doc)
        return {t: out[t] for t in task_id_list}

    get_batch_status = get_batch_result

    def wait(self, task_ids: list[str], timeout: float | None = None) -> dict[str, dict]:
        """Block until every task is terminal (or ``timeout`` s pass); return
        their statuses.  Waits on the task groups' completion events (push),
        not by polling each task.  A busy service's 429 (too many long-polls)
        is waited out for its Retry-After, within HTTP_RETRY_S and the timeout."""

        deadline = None if timeout is None else time.monotonic() + timeout
        cursors: dict[str, str] = {}
        retry = float(setting("HTTP_RETRY_S"))

        def retry_s() -> float:  # ride out a service restart, within the timeout
            return retry if deadline is None else max(0.0, min(retry, deadline - time.monotonic()))

        while True:
            docs = self._batch_result(task_ids, throttle=False, retry_s=retry_s())
            waiting = [t for t, d in docs.items() if d["pending"]]
            if not waiting:
                return docs
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TaskPending(f"{len(waiting)} task(s) still pending after {timeout}s")
            tg = self._task_groups.get(waiting[0]) or self.session_task_group_id
            path = f"/v2/taskgroup/{tg}/events"
            if tg not in cursors:  # mark the stream's end, then re-check, then wait
                cursors[tg] = self._robust("GET", path, params={"after": "$"}, throttle=False,
                                           retry_s=retry_s())["last_id"]
                continue
            wait_s = min(20.0, left) if left is not None else 20.0
            resp = self._robust("GET", path, params={"after": cursors[tg], "timeout": wait_s},
                                timeout=wait_s + 30, throttle=False, retry_s=retry_s())
            cursors[tg] = resp["last_id"]

    def list_tasks(self, task_group_id: str | None = None, status: str | None = None,
                   limit: int = 50) -> list[dict]:
        """Your tasks, newest first (of one task group, or of your latest groups)."""
        params: dict[str, Any] = {"limit": limit}
        if task_group_id:
            params["task_group_id"] = task_group_id
        if status:
            params["status"] = status
        return self.web_client.get("/v2/tasks", params=params)["tasks"]

    def watch_task_group(self, task_group_id: str, after: str = "0", timeout: float = 20.0):
        """Yield lists of terminal task documents of a group as they complete
        (pushed by long-poll), forever; stop iterating when you have enough.
        A 429 (too many long-polls) is waited out for its Retry-After, within
        HTTP_RETRY_S; past that the typed ``RateLimited`` is raised."""
        path = f"/v2/taskgroup/{task_group_id}/events"
        while True:
            resp = self.web_client.get(path, params={"after": after, "timeout": timeout},
                                       timeout=timeout + 30, throttle=False)
            after = resp["last_id"]
            if resp["tasks"]:
                yield resp["tasks"]

    def get_taskgroup_tasks(self, task_group_id: str) -> list[dict]:
        return self.web_client.get(f"/v2/taskgroup/{task_group_id}")["tasks"]

    # ------------------------------------------------------------------ tasks
    def cancel_task(self, task_id: str) -> bool:
        """Cancel a task that has not finished, queued or running (its endpoint
        kills the worker running it, now or when it is next online); True if it
        was cancelled, False if it had finished already."""
        return self.cancel([task_id])[task_id]

    def cancel(self, task_ids: str | Sequence[str]) -> dict[str, bool]:
        """Cancel tasks, queued or running (see :meth:`cancel_task`), in batches
        (funcx.sdk.cancel: a request per FUNCX_BATCH_STATUS_MAX ids): task id ->
        whether it was cancelled (False: it had finished).  An unknown id
        raises ``NotFound`` (TASK_NOT_FOUND) after the others were cancelled."""
        return cancelled_or_raise(cancel_answers(self, task_ids))

    def __repr__(self) -> str:
        return f"FuncXClient({self.funcx_service_address!r})"

    def _repr_html_(self) -> str:
        from funcx.sdk.reprs import esc, render

        return render("client", address=esc(self.funcx_service_address),
                      task_group=esc(self.session_task_group_id), cached=len(self.func_table),
                      throttling="on" if self.throttling_enabled else "off")


__all__ = ["FUNCX_SCOPE", "FuncXClient", "FunctionSearchResults", "SearchResults", "payload_bytes"]
