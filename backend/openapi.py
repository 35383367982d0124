"""The service's OpenAPI 3.0.3 document, served at GET /v2/openapi.json.

``SPEC`` is built once, at import.  Every route the app registers has an
operation here (tests/test_openapi.py compares the paths and methods with
``app.url_map``).  Conventions that hold for every route:

- every non-2xx answer is ``{"code", "message", "http_status_code"}`` JSON;
- every route but GET /v2/version, GET /v2/openapi.json and POST /v2/auth/token
  needs a bearer token (401 without one);
- every route but GET /v2/version is rate limited per identity (429 with
  Retry-After) and answers 503 while Redis is unavailable;
- request bodies are parsed as JSON whatever the Content-Type; a body that is
  not a JSON object is a 400, keys a route does not know are ignored, and
  ``null`` in an optional field means absent;
- a body larger than the payload limit is a 413.
"""
from __future__ import annotations

from backend.openapi_schemas import RESPONSES, SCHEMAS, TASK_STATES, ref
from funcx.version import __version__

DESCRIPTION = """\
A self-hosted funcX / Globus Compute web service.  The routes follow the
Globus Compute (funcX) web-service API, so the public `globus-compute-sdk`
and `funcx` SDKs work against it unchanged; the routes this project adds
(users and tokens, groups, function search, task listing and cancel,
completion events of a task group) live under `/v2/` too.

Every non-2xx answer carries JSON `{"code", "message", "http_status_code"}`.
Request bodies are read as JSON whatever their Content-Type; unknown keys are
ignored and `null` in an optional field means the field is absent.  Reads and
writes are rate limited per identity (429 with Retry-After); 503 means the
service's store is briefly unavailable (retry)."""

JSON = "application/json"
NO_AUTH: list = []


def _uuid_param(name: str, what: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": f"the {what} id (a UUID)",
            "schema": {"type": "string", "format": "uuid"}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


P_EID = _uuid_param("eid", "endpoint")
P_FID = _uuid_param("fid", "function")
P_TID = _uuid_param("tid", "task")
P_TG = _uuid_param("tg", "task group")
P_GID = _uuid_param("gid", "group")
P_CID = _uuid_param("cid", "container")


#: ?detail=1 on a registration: the answer adds function_name, version and reused
P_DETAIL = {"name": "detail", "in": "query", "required": False,
            "schema": {"type": "string", "enum": ["0", "1"]},
            "description": "1: also answer function_name, version and reused"}


def op(op_id: str, summary: str, tag: str, ok: str, errors: tuple[int, ...] = (), *,
       params: tuple[dict, ...] = (), body: str | None = None, public: bool = False,
       limited: bool = True, store: bool = True, description: str | None = None) -> dict:
    """One operation.  ``ok``: the schema name of the 200 answer; ``errors``:
    the route's own error statuses.  401 (unless ``public``), 429 (if
    ``limited``), 503 and 507 (if it uses the ``store``) are added, and 400 and 413
    for a route that reads a JSON ``body``."""
    codes = set(errors)
    if not public:
        codes.add(401)
    if limited:
        codes.add(429)
    if store:
        codes |= {503, 507}
    out: dict = {"operationId": op_id, "summary": summary, "tags": [tag]}
    if description:
        out["description"] = description
    if params:
        out["parameters"] = list(params)
    if body:
        codes |= {400, 413}
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(body)}}}
    out["responses"] = {"200": {"description": "OK", "content": {JSON: {"schema": ref(ok)}}}}
    for code in sorted(codes):
        out["responses"][str(code)] = {"$ref": f"#/components/responses/{code}"}
    if public:
        out["security"] = NO_AUTH
    return out


def _bytes_answer(operation: dict) -> dict:
    """``operation`` answering raw bytes (a binary item) instead of JSON."""
    operation["responses"]["200"] = {"description": "OK: the binary item", "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    return operation


#: ?blobs=1 (the funcX SDK): a large result stays a reference ``bb\n<size>``
P_BLOBS = _query("blobs", {"type": "string", "enum": ["0", "1"]},
                 "1: a large result is answered as the reference `bb\\n<size in bytes>` "
                 "(its bytes from GET /v3/tasks/{tid}/result); otherwise as its text form")


# Error statuses that reading one resource by id can answer: invalid id, unknown.
LOOKUP = (400, 404)
# ... and changing one: also 403 for someone who may see but not change it.
CHANGE = (400, 403, 404)

PATHS: dict[str, dict] = {
    # ------------------------------------------------------------ service, identity
    "/v2/version": {"get": op(
        "getVersion", "API and minimum client versions", "service", "Version",
        params=(_query("service", {"type": "string"}, "accepted and ignored (SDKs send `all`)"),),
        public=True, limited=False, store=False)},
    "/v2/openapi.json": {"get": {
        "operationId": "getOpenApi", "summary": "This OpenAPI document", "tags": ["service"],
        "security": NO_AUTH,
        "responses": {
            "200": {"description": "OK", "content": {JSON: {"schema": {"type": "object"}}}},
            "429": {"$ref": "#/components/responses/429"},
            "503": {"$ref": "#/components/responses/503"}}}},
    "/v2/auth/token": {"post": op(
        "clientCredentials", "Exchange a client id and secret for a bearer token", "identity",
        "AccessToken", (401,), body="ClientCredentials", public=True,
        description="The client-credentials grant.  401 for an unknown client id or a wrong "
                    "secret.")},
    "/v2/whoami": {"get": op("whoAmI", "The caller's identity", "identity", "WhoAmI")},
    "/v2/logout": {"post": op(
        "logout", "Revoke the bearer token this request carries", "identity", "Logout",
        description="The token stops working at once.")},
    # ----------------------------------------------------------------- functions
    "/v3/functions": {"post": op(
        "registerFunctionV3", "Register a function", "functions", "FunctionId", (404,),
        body="FunctionRegistration", params=(P_DETAIL,),
        description="The same content registered again by its owner answers the same id "
                    "(no duplicate); new content under a name the owner uses is that name's "
                    "next version. 404: `group` is not a group of the caller, or "
                    "`container_uuid` is unknown.")},
    "/v2/functions": {
        "post": op("registerFunctionV2", "Register a function (funcX 1.0 shape)", "functions",
                   "FunctionId", (404,), body="FunctionRegistration", params=(P_DETAIL,),
                   description="Same body and answer as POST /v3/functions; 1.0 clients send "
                               "`container_uuid` and `entry_point`."),
        "get": op("searchFunctions", "Search the functions the caller may run", "functions",
                  "FunctionSearch", (400,), params=(
                      _query("q", {"type": "string"},
                             "case-insensitive substring of the name or description"),
                      _query("offset", {"type": "integer"}, "skip this many hits (≥ 0)"),
                      _query("limit", {"type": "integer"}, "page size, clamped to 1..100"),
                      _query("include_unsearchable", {"type": "string", "enum": ["0", "1"]},
                             "1: also the caller's own functions registered "
                             "searchable=false (lookups by name)"),
                      _query("name", {"type": "string"},
                             "exact name: the caller's own versions of it, latest first "
                             "(hidden ones included)"),
                      _query("version", {"type": "integer"}, "with name: only that version"),
                      _query("mine", {"type": "string", "enum": ["0", "1"]},
                             "1: only the caller's own functions (a page and its total "
                             "count only them; `funcx function list`)")),
                  description="Newest first: the caller's own, public ones and those shared "
                              "with the caller's groups; functions registered "
                              "searchable=false are left out."),
    },
    "/v2/functions/{fid}": {
        "get": op("getFunctionV2", "A function", "functions", "Function", LOOKUP, params=(P_FID,)),
        "delete": op("deleteFunctionV2", "Delete a function (owner only)", "functions",
                     "FunctionDeleted", CHANGE, params=(P_FID,)),
    },
    "/v3/functions/{fid}": {
        "get": op("getFunctionV3", "A function", "functions", "Function", LOOKUP, params=(P_FID,)),
        "delete": op("deleteFunctionV3", "Delete a function (owner only)", "functions",
                     "FunctionDeleted", CHANGE, params=(P_FID,)),
    },
    # -------------------------------------------------------------------- submit
    "/v3/endpoints/{eid}/submit": {"post": op(
        "submitV3", "Submit tasks to one endpoint", "tasks", "SubmitV3Result", (*CHANGE, 409),
        params=(P_EID, {"name": "Idempotency-Key", "in": "header", "required": False,
                        "description": "1-128 letters, digits or . _ : -; a repeated request "
                                       "with the same key queues nothing and gets the first "
                                       "one's answer (kept FUNCX_SUBMIT_IDEMPOTENCY_S)",
                        "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"}}),
        body="SubmitV3",
        description="All or nothing: every function is checked before anything is queued, and "
                    "nothing is answered 5xx or 429 once it was.  404: unknown endpoint or "
                    "function; 403 (FUNCTION_NOT_ALLOWED): the endpoint is restricted to other "
                    "functions; 400 RESOURCE_SPEC_INVALID / RESOURCE_SPEC_OVER_LIMIT: a "
                    "malformed resource_specification or one above the endpoint owner's limits "
                    "(the message names the field); 400 MPI_NODES_EXCEEDED: an MPI task asks "
                    "more num_nodes than a block of the endpoint has (both numbers named); "
                    "400 RETRY_POLICY_INVALID: a malformed "
                    "retry_policy or one over its bounds; 403 IDENTITY_UNMAPPED: a multi-user "
                    "endpoint maps the caller's identity to no local account; 400 "
                    "USER_ENDPOINT_CONFIG_INVALID: user_endpoint_config outside that "
                    "endpoint's schema (the error named); 413: a payload exceeds the limit "
                    "(TASK_PAYLOAD_TOO_LARGE) or more tasks than FUNCX_MAX_TASKS_PER_SUBMIT "
                    "(TOO_MANY_TASKS); 429 QUOTA_QUEUED_TASKS / QUOTA_STORED_BYTES: the "
                    "caller's quota would be passed; 507 STORE_FULL: the store is full.  A "
                    "task_group_id another user holds is answered as a fresh one (the caller "
                    "gets a private group under that id).  409: the Idempotency-Key was used for "
                    "another submit.  A client that did not get the answer (a reset "
                    "connection, 503) may send the request again with the same key.  The "
                    "body may instead be `application/vnd.funcx.frames` (the funcX SDK's "
                    "binary path for large inputs: this JSON as its header, raw frames after "
                    "it, a payload item `bb\\n<k>` standing for frame k); 400 FRAMES_INVALID: "
                    "a malformed frames body or reference, a frame missing, referenced twice "
                    "or never, or a reference in a JSON body.")},
    "/v2/submit": {"post": op(
        "submitV2", "Submit [function, endpoint, payload] triples (funcX 1.0)", "tasks",
        "SubmitV2Result", (404,), body="SubmitV2",
        description="Each (endpoint, function) group succeeds or fails on its own: a failed "
                    "one answers entries with `status: Failed`, its `http_status_code`, `code` "
                    "and `reason`; the others are queued together, or none is.  A payload over "
                    "the limit or more tasks than FUNCX_MAX_TASKS_PER_SUBMIT refuses the whole "
                    "request (413), and so do a passed quota (429) and a full store (507).")},
    # --------------------------------------------------------------------- tasks
    "/v2/tasks": {"get": op(
        "listTasks", "The caller's tasks, newest first", "tasks", "TaskList", (400, 404),
        params=(_query("limit", {"type": "integer"}, "at most this many (clamped to 1..10000, "
                                                     "default 50)"),
                _query("status", {"type": "string", "enum": TASK_STATES}, "only tasks in this "
                                                                          "state"),
                _query("task_group_id", {"type": "string", "format": "uuid"},
                       "only this task group's (404 if it is not the caller's)")))},
    "/v2/tasks/{tid}": {"get": op("getTask", "A task document", "tasks", "TaskDocument",
                                  LOOKUP, params=(P_TID, P_BLOBS))},
    "/v3/tasks/{tid}/result": {"get": _bytes_answer(op(
        "getTaskResultBytes", "A task's large result, as bytes (the binary path)", "tasks",
        "TaskDocument", LOOKUP, params=(P_TID,),
        description="The result of a task whose document (asked with `blobs=1`) holds a "
                    "reference `bb\\n<size>`, as its binary item: the two-character "
                    "serializer id, a newline and the raw bytes.  404 TASK_NOT_FOUND: not the "
                    "caller's task, or its result is not a blob."))},
    "/v2/tasks/{tid}/cancel": {"post": op(
        "cancelTask", "Cancel a task that has not finished", "tasks", "TaskCancel",
        LOOKUP, params=(P_TID,), description="Queued or running: the task is `cancelled` at "
        "once and its endpoint drops it or kills the worker running it (now, or when it is "
        "next online). A no-op (`cancelled: false`) on a finished task.")},
    "/v2/tasks/cancel": {"post": op(
        "cancelTasks", "Cancel many tasks in one request", "tasks", "TasksCancel",
        body="BatchStatusRequest", description="Each id as by `cancelTask`, in one round trip "
        "(the SDK's `cancel`, the executor's `shutdown(cancel_futures=True)` and `funcx task "
        "cancel` use it). An id the caller has no task of (unknown or someone else's) answers "
        "`{cancelled: false, status: unknown}`. At most FUNCX_BATCH_STATUS_MAX ids (400 "
        "TOO_MANY_TASK_IDS).")},
    "/v2/batch_status": {"post": op(
        "batchStatus", "Task documents of many tasks", "tasks", "BatchStatus",
        body="BatchStatusRequest", params=(P_BLOBS,),
        description="An id the caller has no task of answers `{status: unknown, reason}`.")},
    "/v2/taskgroup/{tg}": {"get": op("getTaskGroup", "The tasks of a task group", "tasks",
                                     "TaskGroup", LOOKUP, params=(P_TG,))},
    "/v2/taskgroup/{tg}/events": {"get": op(
        "getTaskGroupEvents", "Terminal task documents of a group, by long-poll", "tasks",
        "TaskGroupEvents", LOOKUP, params=(
            P_TG,
            _query("after", {"type": "string", "pattern": r"^(\$|[0-9]{1,19}(-[0-9]{1,19})?)$"},
                   "a stream id: `0` (default) for all, `$` for none (just the current end, "
                   "a cursor to wait from), or the `last_id` of a previous answer"),
            _query("timeout", {"type": "number"},
                   "seconds to wait for the first event (default 0, capped at "
                   "FUNCX_LONGPOLL_MAX_S)"), P_BLOBS),
        description="Only the caller's tasks.  429 LONGPOLL_LIMIT (with Retry-After): the "
                    "caller has FUNCX_LONGPOLL_PER_IDENTITY long-polls open already, or the "
                    "service's long-poll threads are all waiting and nothing is there yet.  "
                    "With `Accept: text/event-stream` and a timeout the answer is a stream "
                    "(server-sent events) lasting `timeout` seconds: each answer as a `data:` "
                    "message as its events come, a comment line after each quiet 2 s; an "
                    "answer that comes at once is this JSON.")},
    # ----------------------------------------------------------------- endpoints
    "/v3/endpoints": {
        "post": op("registerEndpointV3", "Register an endpoint", "endpoints",
                   "EndpointRegistration", CHANGE, body="EndpointRegistrationRequest",
                   description="A new id unless `endpoint_id` names one; re-registering "
                               "someone else's visible endpoint is a 403; 400 "
                               "MULTI_USER_METADATA_INVALID: a multi-user endpoint's "
                               "published identity mapping rules or user config schema "
                               "are malformed or over their bounds (the problem named)."),
        "get": op("listEndpointsV3", "The caller's endpoints", "endpoints", "EndpointList",
                  (400,), params=(_query("role", {"type": "string", "enum": ["owner", "any"]},
                                         "`any`: public endpoints too (default `owner`)"),)),
    },
    "/v2/endpoints": {
        "post": op("registerEndpointV2", "Register an endpoint", "endpoints",
                   "EndpointRegistration", CHANGE, body="EndpointRegistrationRequest"),
        "get": op("listEndpointsV2", "The caller's endpoints", "endpoints", "EndpointList",
                  (400,), params=(_query("role", {"type": "string", "enum": ["owner", "any"]},
                                         "`any`: public endpoints too (default `owner`)"),)),
    },
    "/v3/endpoints/{eid}": {
        "put": op("updateEndpoint", "Register (or re-register) the endpoint with this id",
                  "endpoints", "EndpointRegistration", CHANGE, params=(P_EID,),
                  body="EndpointRegistrationRequest"),
        "get": op("getEndpointV3", "An endpoint", "endpoints", "Endpoint", LOOKUP,
                  params=(P_EID,)),
        "delete": op("deleteEndpointV3", "Delete an endpoint (owner only)", "endpoints",
                     "EndpointDeleted", CHANGE, params=(P_EID,),
                     description="Tasks still queued for it fail (`failed_tasks`)."),
    },
    "/v2/endpoints/{eid}": {
        "get": op("getEndpointV2", "An endpoint", "endpoints", "Endpoint", LOOKUP,
                  params=(P_EID,)),
        "delete": op("deleteEndpointV2", "Delete an endpoint (owner only)", "endpoints",
                     "EndpointDeleted", CHANGE, params=(P_EID,)),
    },
    "/v3/endpoints/{eid}/status": {"get": op(
        "getEndpointStatusV3", "Liveness and load of an endpoint", "endpoints", "EndpointStatus",
        LOOKUP, params=(P_EID,))},
    "/v2/endpoints/{eid}/status": {"get": op(
        "getEndpointStatusV2", "Liveness and load of an endpoint", "endpoints", "EndpointStatus",
        LOOKUP, params=(P_EID,))},
    "/v3/endpoints/{eid}/lock": {"post": op(
        "lockEndpoint", "Stop an endpoint (owner only)", "endpoints", "EndpointLock", CHANGE,
        params=(P_EID,))},
    "/v3/endpoints/{eid}/allowed_functions": {"get": op(
        "getAllowedFunctions", "The functions an endpoint is restricted to", "endpoints",
        "AllowedFunctions", LOOKUP, params=(P_EID,),
        description="`restricted: false` (and no functions): any function may run there.")},
    "/v2/endpoints/{eid}/whitelist": {
        "get": op("getWhitelist", "The functions an endpoint is restricted to (funcX 1.0)",
                  "endpoints", "Whitelist", LOOKUP, params=(P_EID,)),
        "post": op("addWhitelist", "Allow more functions on an endpoint (owner only)",
                   "endpoints", "Whitelist", CHANGE, params=(P_EID,), body="WhitelistRequest"),
    },
    "/v2/endpoints/{eid}/whitelist/{fid}": {"delete": op(
        "deleteWhitelist", "Remove a function from an endpoint's allowed functions (owner only)",
        "endpoints", "Whitelist", CHANGE, params=(P_EID, P_FID))},
    # -------------------------------------------------------------------- groups
    "/v2/groups": {
        "post": op("createGroup", "Create a group (local auth mode)", "groups", "GroupCreated",
                   description="400 (GROUPS_ARE_GLOBUS) when groups are Globus Groups.",
                   body="GroupCreate"),
        "get": op("listGroups", "The caller's groups", "groups", "GroupList"),
    },
    "/v2/groups/{gid}": {"get": op(
        "getGroup", "A group and its members (local auth mode)", "groups", "Group", LOOKUP,
        params=(P_GID,))},
    "/v2/groups/{gid}/members": {"post": op(
        "addGroupMember", "Add a member (group owner only)", "groups", "GroupMemberAdded",
        CHANGE, params=(P_GID,), body="GroupMemberRequest",
        description="404: unknown group, or unknown user.")},
    "/v2/groups/{gid}/members/{user}": {"delete": op(
        "removeGroupMember", "Remove a member (the owner, or the member themself)", "groups",
        "GroupMemberRemoved", CHANGE, params=(
            P_GID, {"name": "user", "in": "path", "required": True,
                    "description": "a user name or user id", "schema": {"type": "string"}}),
        description="400: the owner cannot leave their own group.")},
    # ---------------------------------------------------------------- containers
    "/v2/containers": {
        "post": op("registerContainer", "Register a container image", "containers",
                   "ContainerId", body="ContainerCreate"),
        "get": op("listContainers", "The caller's containers", "containers", "ContainerList"),
    },
    "/v2/containers/{cid}/{ctype}": {"get": op(
        "getContainer", "A container of this type", "containers", "ContainerRecord", LOOKUP,
        params=(P_CID, {"name": "ctype", "in": "path", "required": True,
                        "description": "the container type (case-insensitive); another type "
                                       "than the container's is a 404",
                        "schema": {"type": "string"}}))},
}

SPEC: dict = {
    "openapi": "3.0.3",
    "info": {
        "title": "funcX self-hosted web service",
        "version": __version__,
        "description": DESCRIPTION,
        "license": {"name": "Apache-2.0"},
    },
    "tags": [{"name": t} for t in ("service", "identity", "functions", "tasks", "endpoints",
                                   "groups", "containers")],
    "security": [{"bearerAuth": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                           "description": "a token from `funcx login`, "
                                                          "`funcx-admin`, or /v2/auth/token"}},
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}
