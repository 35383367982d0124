"""One typed exception per failure mode, each saying what to do next."""
from __future__ import annotations

from typing import Any


class FuncxError(Exception):
    """Base class of every funcX error."""


# ----------------------------------------------------------------- HTTP / service
class FuncxAPIError(FuncxError):
    """The service answered with an error: carries HTTP status, code and message."""

    #: seconds the service asked to wait before retrying (its Retry-After), if any
    retry_after: float | None = None
    #: what to do next, appended to the message (set by the types that need it)
    hint: str = ""

    def __init__(self, http_status: int, code: str, message: str, body: Any = None):
        self.http_status = http_status
        self.code = code
        self.message = message
        self.body = body
        super().__init__(f"{http_status} {code}: {message}"
                         + (f" [{self.hint}]" if self.hint else ""))


HTTPError = FuncxAPIError


class BadRequest(FuncxAPIError):
    """The request was malformed (400): fix the field the message names."""


class ResourceSpecificationError(BadRequest):
    """A task's ``resource_specification`` is malformed or above what the
    endpoint's owner allows (400 ``RESOURCE_SPEC_INVALID`` /
    ``RESOURCE_SPEC_OVER_LIMIT``): fix or lower the field the message names
    (ask the endpoint's owner for the bounds)."""

    hint = "fix the resource_specification field named, or ask the endpoint's owner for its bounds"


class Unauthorized(FuncxAPIError):
    """No, a bad, expired or revoked token (401): run ``funcx login``."""


class Forbidden(FuncxAPIError):
    """You may not do this (403): ask the owner to share it or allow the function."""


class NotFound(FuncxAPIError):
    """No such task, group, function or endpoint that you may see (404): check the id."""


class RequestConflict(FuncxAPIError):
    """An Idempotency-Key was reused for a different submit (409): use a fresh key."""


class RequestTooLarge(FuncxAPIError):
    """A payload or a submit is over the service's limit (413): send less per request."""


class RateLimited(FuncxAPIError):
    """Too many requests or long-polls at once (429 ``RATE_LIMITED`` /
    ``LONGPOLL_LIMIT``): nothing was done; the SDK already waited the service's
    ``retry_after`` for as long as ``FUNCX_HTTP_RETRY_S`` allows — poll less
    often (or with fewer concurrent waits), or raise that setting."""

    hint = "wait retry_after seconds; poll less often or raise FUNCX_HTTP_RETRY_S"


class QuotaExceeded(FuncxAPIError):
    """Your queued-task or stored-bytes quota is full (429 ``QUOTA_QUEUED_TASKS``
    / ``QUOTA_STORED_BYTES``): nothing was queued; fetch results or wait for
    tasks to finish (or cancel some), then submit again."""

    hint = "nothing was queued: fetch results or let tasks finish, then submit again"


class StoreFull(QuotaExceeded):
    """The service's store is full (507 ``STORE_FULL``): nothing was written and
    the SDK does not retry it; tell the service's operator (raise
    ``FUNCX_REDIS_MAXMEMORY`` or free space), then submit again."""

    hint = "nothing was written: ask the service's operator to free space, then submit again"


class ServiceUnavailable(FuncxAPIError):
    """The service or its identity provider is briefly unavailable (503): retry shortly."""


class ServiceError(FuncxAPIError):
    """The service failed (500): its log has the details; report it."""


def _api_error_types() -> tuple[dict[str, type[FuncxAPIError]], dict[int, type[FuncxAPIError]]]:
    from funcx.protocol import error_codes as ec

    by_code: dict[str, type[FuncxAPIError]] = {
        ec.BAD_REQUEST: BadRequest, ec.RESOURCE_SPEC_INVALID: ResourceSpecificationError,
        ec.RESOURCE_SPEC_OVER_LIMIT: ResourceSpecificationError,
        ec.MPI_NODES_EXCEEDED: ResourceSpecificationError, ec.GROUPS_ARE_GLOBUS: BadRequest,
        ec.AMBIGUOUS_NAME: BadRequest, ec.RESULT_SERIALIZERS_INVALID: BadRequest,
        ec.RETRY_POLICY_INVALID: BadRequest, ec.TOO_MANY_TASK_IDS: BadRequest,
        ec.FRAMES_INVALID: BadRequest,
        ec.USER_ENDPOINT_CONFIG_INVALID: BadRequest, ec.IDENTITY_UNMAPPED: Forbidden,
        ec.MULTI_USER_METADATA_INVALID: BadRequest,
        ec.UNAUTHORIZED: Unauthorized,
        ec.FORBIDDEN: Forbidden, ec.FUNCTION_NOT_ALLOWED: Forbidden,
        ec.TASK_NOT_FOUND: NotFound, ec.TASK_GROUP_NOT_FOUND: NotFound,
        ec.FUNCTION_NOT_FOUND: NotFound, ec.ENDPOINT_NOT_FOUND: NotFound,
        ec.CONTAINER_NOT_FOUND: NotFound, ec.GROUP_NOT_FOUND: NotFound,
        ec.CONTAINER_NOT_FOUND: NotFound, ec.GROUP_NOT_FOUND: NotFound,
        ec.IDEMPOTENCY_KEY_REUSED: RequestConflict,
        ec.TASK_PAYLOAD_TOO_LARGE: RequestTooLarge, ec.TOO_MANY_TASKS: RequestTooLarge,
        ec.RATE_LIMITED: RateLimited, ec.LONGPOLL_LIMIT: RateLimited,
        ec.QUOTA_QUEUED_TASKS: QuotaExceeded, ec.QUOTA_STORED_BYTES: QuotaExceeded,
        ec.STORE_FULL: StoreFull,
        ec.SERVICE_UNAVAILABLE: ServiceUnavailable, ec.AUTH_UNAVAILABLE: ServiceUnavailable,
        ec.INTERNAL_ERROR: ServiceError,
    }
    # codes not in the catalogue (another service's, an SDK's own) still get a
    # type from their HTTP status
    by_status: dict[int, type[FuncxAPIError]] = {
        400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: RequestConflict,
        413: RequestTooLarge, 429: RateLimited, 500: ServiceError, 503: ServiceUnavailable,
        507: StoreFull,
    }
    return by_code, by_status


API_ERRORS, API_ERRORS_BY_STATUS = _api_error_types()


def api_error(http_status: int, code: str, message: str, body: Any = None) -> FuncxAPIError:
    """The typed :class:`FuncxAPIError` for an error answer: chosen by its code
    (``funcx.protocol.error_codes``), else by its HTTP status."""
    cls = API_ERRORS.get(code) or API_ERRORS_BY_STATUS.get(http_status, FuncxAPIError)
    return cls(http_status, code, message, body)


class ServiceUnreachable(FuncxError):
    #: whether the request may have reached the service (False: safe to retry)
    sent: bool = True

    def __init__(self, address: str, reason: str = ""):
        self.address = address
        super().__init__(
            f"cannot reach the funcX service at {address}"
            + (f" ({reason})" if reason else "")
            + "; start it with `funcx service start` or set FUNCX_SERVICE_ADDRESS"
        )


class NotLoggedIn(FuncxError):
    def __init__(self, detail: str = ""):
        super().__init__(
            "no funcX credentials found"
            + (f" ({detail})" if detail else "")
            + "; start the local service with `funcx service start`, or run `funcx login`"
        )


class VersionMismatch(FuncxError):
    def __init__(self, version: str, min_version: str, what: str = "SDK"):
        self.version = version
        self.min_version = min_version
        super().__init__(
            f"this {what} is version {version} but the service needs >= {min_version}; upgrade funcx"
        )


# ---------------------------------------------------------------------- throttling
class ThrottlingException(FuncxError):
    """Raised client-side before a request would exceed the documented limits."""


class MaxRequestsExceeded(ThrottlingException):
    pass


class MaxRequestSizeExceeded(ThrottlingException):
    pass


# --------------------------------------------------------------------------- tasks
class TaskPending(FuncxError):
    """The task has no result yet; ``reason`` is its current status."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"task pending: {reason}")


class DependencyFailed(FuncxError):
    """A future passed as an argument failed, so this task was never submitted.
    ``dependency_task_id``, ``dependency_function`` and ``error`` (the
    dependency's own exception, also the ``__cause__``) say which and why."""

    def __init__(self, task_id: str | None, function: str | None, error: BaseException):
        self.dependency_task_id = task_id
        self.dependency_function = function
        self.error = error
        what = f"task {task_id}" if task_id else "a future"
        if function:
            what += f" ({function})"
        super().__init__(f"this task was not submitted: its argument {what} failed with "
                         f"{type(error).__name__}: {error}")

    def __reduce__(self):
        return (type(self), (self.dependency_task_id, self.dependency_function, self.error))


class TaskExecutionFailed(FuncxError):
    """The remote function failed; ``remote_data`` is the remote traceback text."""

    #: what the task wrote to stdout / stderr before it failed ("" when nothing)
    stdout: str = ""
    stderr: str = ""

    def __init__(self, remote_data: str, completion_t: str | None = None):
        self.remote_data = remote_data
        self.completion_t = completion_t or "unknown"
        super().__init__(remote_data)

    def __str__(self) -> str:
        return "\n" + self.remote_data.strip()


class SerializationError(FuncxError):
    """Data could not be (de)serialized; says which and, if known, why."""


class RemoteExceptionWrapper(FuncxError):
    """Stand-in for a remote exception whose own type could not be rebuilt."""


# ---------------------------------------------------------- endpoint-side failures
def _rebuild_endpoint_error(cls: type[EndpointTaskError], message: str) -> EndpointTaskError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    return exc


class EndpointTaskError(FuncxError):
    """Base of failures the endpoint reports instead of the function's own."""

    def __reduce__(self):
        # Workers pickle these for the SDK.  The default reduce calls
        # cls(*self.args) with the formatted message, which garbles the text or
        # fails (the subclasses' __init__ take other parameters): rebuild from
        # the message and restore the attributes instead.
        return (_rebuild_endpoint_error, (type(self), str(self)), self.__dict__)


class WorkerLost(EndpointTaskError):
    def __init__(self, worker_id: Any = "?", detail: str = ""):
        self.worker_id = worker_id
        super().__init__(
            f"the worker {worker_id} running this task died ({detail or 'no exit status'}); "
            "the task may be the cause — check memory use or native crashes (an endpoint runs "
            "such a task again up to max_retries_on_system_failure times; the task's "
            "attempts list each run)"
        )


class ManagerLost(EndpointTaskError):
    def __init__(self, manager_id: Any = "?", attempts: int = 0):
        self.manager_id = manager_id
        super().__init__(
            f"the manager {manager_id} running this task went silent and was declared lost "
            f"(after {attempts} attempt(s)); its node may have failed"
        )


class TaskTimeout(EndpointTaskError):
    def __init__(self, walltime: float):
        self.walltime = walltime
        super().__init__(f"task killed after exceeding its walltime of {walltime} s")


class MaxResultSizeExceeded(EndpointTaskError):
    def __init__(self, size: int, limit: int):
        super().__init__(
            f"result of {size} bytes (serialized) exceeds the limit of {limit} bytes "
            "(FUNCX_MAX_RESULT_BYTES, enforced by the endpoint that ran the task and by the "
            "service that stores results: raise it on both hosts); return less data, e.g. "
            "write it to a file and return its path")


class FunctionNotAllowed(EndpointTaskError):
    def __init__(self, function_id: str):
        super().__init__(f"function {function_id} is not in this endpoint's allowed functions")


class SerializerNotAllowed(EndpointTaskError):
    """The endpoint refused the task: its function or arguments were serialized
    with a strategy outside the endpoint's ``allowed_serializers`` (the message
    names the allowed ones; ``funcx endpoint show`` lists them too)."""

    def __init__(self, reason: str):
        super().__init__(reason)

    @property
    def code(self) -> str:
        from funcx.protocol.error_codes import SERIALIZER_NOT_ALLOWED

        return SERIALIZER_NOT_ALLOWED


class ResultSerializationFailed(EndpointTaskError, SerializationError):
    """None of the task's ``result_serializers`` could serialize its result
    (e.g. ``JSONData`` alone for a value that is not JSON): add a fallback such
    as ``DillDataBase64`` to the list, or return JSON-able data."""

    def __init__(self, reason: str):
        super().__init__(f"the result could not be serialized by any of the requested "
                         f"result_serializers ({reason}); end the list with a fallback such "
                         f"as DillDataBase64, or return data that the first one can take")

    @property
    def code(self) -> str:
        from funcx.protocol.error_codes import RESULT_NOT_SERIALIZABLE

        return RESULT_NOT_SERIALIZABLE


class IdentityUnmapped(EndpointTaskError):
    """A multi-user endpoint maps the submitter's identity to no local account
    (or to one it refuses): ask the endpoint's administrators to map you."""

    @property
    def code(self) -> str:
        from funcx.protocol.error_codes import IDENTITY_UNMAPPED

        return IDENTITY_UNMAPPED


class UserEndpointConfigInvalid(EndpointTaskError):
    """A multi-user endpoint's user config template refused the task's
    ``user_endpoint_config``: change the values the message names."""

    @property
    def code(self) -> str:
        from funcx.protocol.error_codes import USER_ENDPOINT_CONFIG_INVALID

        return USER_ENDPOINT_CONFIG_INVALID


class UserEndpointLimit(EndpointTaskError):
    """The multi-user endpoint runs as many child endpoints, or holds as many
    tasks in flight, for your account as it allows: submit with a
    user_endpoint_config already in use, or later."""

    @property
    def code(self) -> str:
        from funcx.protocol.error_codes import USER_ENDPOINT_LIMIT

        return USER_ENDPOINT_LIMIT


class UserEndpointStartFailed(EndpointTaskError):
    """The multi-user endpoint could not start a child endpoint for your
    account (a site problem: its administrators find why in its log)."""

    @property
    def code(self) -> str:
        from funcx.protocol.error_codes import USER_ENDPOINT_START_FAILED

        return USER_ENDPOINT_START_FAILED


class BlobMissing(EndpointTaskError):
    """A large input of the task (a blob, sent beside the JSON by the funcX
    SDK's binary path) was gone when the endpoint came to run it (it expired,
    or was deleted): submit the task again."""

    @property
    def code(self) -> str:
        from funcx.protocol.error_codes import BLOB_MISSING

        return BLOB_MISSING
