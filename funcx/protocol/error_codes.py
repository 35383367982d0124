"""Every error code the service answers with (``{"code", "message"}``, API.md),
defined once and shared by the service (which raises them) and the SDK (which
maps them to typed exceptions).  Each constant's comment says when it is used.
"""
from __future__ import annotations

# --- request shape
BAD_REQUEST = "BAD_REQUEST"  #: malformed body, field or parameter (400)
TASK_PAYLOAD_TOO_LARGE = "TASK_PAYLOAD_TOO_LARGE"  #: a payload or request body over the limit (413)
RESOURCE_SPEC_INVALID = "RESOURCE_SPEC_INVALID"  #: resource_specification malformed (400)
RESOURCE_SPEC_OVER_LIMIT = "RESOURCE_SPEC_OVER_LIMIT"  #: above the endpoint owner's bound (400)
#: an MPI task asks more nodes (num_nodes) than a block of the endpoint has (400)
MPI_NODES_EXCEEDED = "MPI_NODES_EXCEEDED"
RETRY_POLICY_INVALID = "RETRY_POLICY_INVALID"  #: retry_policy malformed or over its bounds (400)
TOO_MANY_TASKS = "TOO_MANY_TASKS"  #: more tasks in one submit than the service takes (413)
#: more task ids in one batch_status or batch cancel request than FUNCX_BATCH_STATUS_MAX (400)
TOO_MANY_TASK_IDS = "TOO_MANY_TASK_IDS"
IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"  #: same key, different submit (409)
#: a submit's result_serializers is not a list of known strategy import paths (400)
RESULT_SERIALIZERS_INVALID = "RESULT_SERIALIZERS_INVALID"

# --- identity and access
UNAUTHORIZED = "UNAUTHORIZED"  #: no, bad, expired or revoked token (401)
FORBIDDEN = "FORBIDDEN"  #: may see, may not change (403)
FUNCTION_NOT_ALLOWED = "FUNCTION_NOT_ALLOWED"  #: the endpoint restricts its functions (403)
GROUPS_ARE_GLOBUS = "GROUPS_ARE_GLOBUS"  #: local group calls in Globus mode
AUTH_UNAVAILABLE = "AUTH_UNAVAILABLE"  #: Globus Auth did not answer (503)
#: a multi-user endpoint maps the submitter's identity to no local account (403; also
#: a task's details.error_code when the endpoint itself refuses it)
IDENTITY_UNMAPPED = "IDENTITY_UNMAPPED"
#: user_endpoint_config outside the multi-user endpoint's schema (400; also a task's
#: details.error_code when the endpoint's template refuses it)
USER_ENDPOINT_CONFIG_INVALID = "USER_ENDPOINT_CONFIG_INVALID"
#: a multi-user endpoint's registration publishes identity mapping rules or a user
#: config schema that are malformed or over their bounds (400)
MULTI_USER_METADATA_INVALID = "MULTI_USER_METADATA_INVALID"
#: a multi-user endpoint's limit on one account's children or tasks in flight is reached
#: (task failure)
USER_ENDPOINT_LIMIT = "USER_ENDPOINT_LIMIT"
#: a multi-user endpoint could not start the child for the account (task failure)
USER_ENDPOINT_START_FAILED = "USER_ENDPOINT_START_FAILED"

#: a binary submit body (application/vnd.funcx.frames) that does not follow
#: its format, or a payload referring to a frame it does not carry (400)
FRAMES_INVALID = "FRAMES_INVALID"
#: a task's input blob was gone when the endpoint came to run it (task failure)
BLOB_MISSING = "BLOB_MISSING"
#: an endpoint's result named a blob it had not written (the result becomes a failure)
RESULT_BLOB_MISSING = "RESULT_BLOB_MISSING"

# --- not found (404; never says whether the thing exists for someone else)
TASK_NOT_FOUND = "TASK_NOT_FOUND"
TASK_GROUP_NOT_FOUND = "TASK_GROUP_NOT_FOUND"
FUNCTION_NOT_FOUND = "FUNCTION_NOT_FOUND"
ENDPOINT_NOT_FOUND = "ENDPOINT_NOT_FOUND"
CONTAINER_NOT_FOUND = "CONTAINER_NOT_FOUND"
GROUP_NOT_FOUND = "GROUP_NOT_FOUND"

# --- fair sharing
RATE_LIMITED = "RATE_LIMITED"  #: too many requests in the window (429, Retry-After)
QUOTA_QUEUED_TASKS = "QUOTA_QUEUED_TASKS"  #: the user's queued-task quota is full (429)
QUOTA_STORED_BYTES = "QUOTA_STORED_BYTES"  #: the user's stored-bytes quota is full (429)
LONGPOLL_LIMIT = "LONGPOLL_LIMIT"  #: too many concurrent long-polls by one identity (429)
STORE_FULL = "STORE_FULL"  #: Redis reached maxmemory; nothing was written (507)

# --- the service
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"  #: the store is unreachable (503, Retry-After)
INTERNAL_ERROR = "INTERNAL_ERROR"  #: a bug; the service log has details (500)

# --- raised by the SDK itself (never sent by the service)
AMBIGUOUS_NAME = "AMBIGUOUS_NAME"  #: a name matches more than one endpoint or function (400)
BAD_RESPONSE = "BAD_RESPONSE"  #: the service answered something that is not JSON
HTTP_ERROR = "HTTP_ERROR"  #: an error answer without a ``{"code", "message"}`` body

# --- a task's own failure, set by the endpoint (the task document's details.error_code)
#: its function or arguments use a serializer outside the endpoint's allowed_serializers
SERIALIZER_NOT_ALLOWED = "SERIALIZER_NOT_ALLOWED"
#: none of the task's result_serializers could serialize its result
RESULT_NOT_SERIALIZABLE = "RESULT_NOT_SERIALIZABLE"

# --- an endpoint's hardware report (issue 18), shown in its status (never an HTTP error)
#: the service refused a manager's hardware report (outside its schema or bounds)
HARDWARE_REPORT_REFUSED = "HARDWARE_REPORT_REFUSED"
#: a node cannot pin its workers as cpu_affinity asks: they run unpinned
CPU_AFFINITY_UNSATISFIABLE = "CPU_AFFINITY_UNSATISFIABLE"

#: the codes that are never the service's HTTP answer (the SDK's own, a task's
#: failure set by its endpoint, an endpoint's status report): no API error type
#: maps them, and ``tests/test_sdk_concepts.py`` holds every other code typed
NOT_HTTP = frozenset({BAD_RESPONSE, HTTP_ERROR, SERIALIZER_NOT_ALLOWED, RESULT_NOT_SERIALIZABLE,
                      HARDWARE_REPORT_REFUSED, CPU_AFFINITY_UNSATISFIABLE,
                      USER_ENDPOINT_LIMIT, USER_ENDPOINT_START_FAILED,
                      BLOB_MISSING, RESULT_BLOB_MISSING})
