"""Schemas and shared responses of the service's OpenAPI document (see
backend/openapi.py, which puts them under ``components``)."""
from __future__ import annotations

from backend.routes.containers import TYPES as CONTAINER_TYPES
from funcx.defaults import setting
from funcx.protocol import error_codes
from funcx.protocol.states import TaskState

STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
UUID = {"type": "string", "format": "uuid"}
ANY_OBJECT = {"type": "object", "additionalProperties": True}
NULL_STR = {"type": "string", "nullable": True}


def obj(props: dict, required: tuple | list = (), *, extra: bool | dict = True, **more) -> dict:
    """An object schema; ``extra``: whether other keys are allowed (they are
    ignored by every route, and answers may grow keys), or their schema."""
    out = {"type": "object", "properties": props, "additionalProperties": extra, **more}
    if required:
        out["required"] = list(required)
    return out


def arr(items: dict, **more) -> dict:
    return {"type": "array", "items": items, **more}


def opt(schema: dict, description: str | None = None) -> dict:
    """An optional request field: the routes treat ``null`` as absent."""
    out = {**schema, "nullable": True}
    if description:
        out["description"] = description
    return out


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


TASK_STATES = [s.value for s in TaskState]

#: why an endpoint's tasks wait (reported by its agent; ``endpoint_offline`` by the service)
PROBLEM = obj({
    "kind": {**STR, "description": "submit_failed (the provider refused a block: its own "
             "text), never_registered (a block's manager did not register in time), address "
             "(managers are told an address they cannot reach), endpoint_offline"},
    "message": STR,
    "block": NULL_STR,
    "since": {"type": "number", "nullable": True, "description": "epoch seconds"},
}, ["kind", "message"])

TASK_DOCUMENT = obj({
    "task_id": STR,
    "status": {**STR, "description": "lower case: " + ", ".join(TASK_STATES) + " (or `unknown` "
               "for an id the caller has no task of, in batch_status)"},
    "task_group_id": NULL_STR,
    "result": {**STR, "description": "the serialized result, as the endpoint made it"},
    "exception": {**STR, "description": "the remote traceback text"},
    "exception_data": STR,
    "stdout": {**STR, "description": "what the task wrote to stdout (absent when nothing); "
               "longer output is cut in the middle, with a marker line saying so"},
    "stderr": {**STR, "description": "what the task wrote to stderr, as stdout"},
    "completion_t": {**STR, "description": "epoch seconds as a string; on every terminal document"},
    "details": obj({"problems": {**arr(PROBLEM), "description": "while the task waits "
                                 "(waiting-for-ep/-nodes/-launch): why, as its endpoint reports"},
                    "endpoint_status": {**STR, "enum": ["online", "offline"],
                                        "description": "an unfinished task's endpoint, when "
                                        "read; while offline the task reads waiting-for-ep"},
                    "last_status": {**STR, "description": "while its endpoint is offline: the "
                                    "state the task had reached (e.g. running)"}}),
    "reason": STR,
    "attempts": {**arr(obj({"n": INT, "status": STR, "error_type": STR, "message": STR,
                            "manager": STR, "start": {**NUM, "nullable": True},
                            "end": {**NUM, "nullable": True}})),
                 "description": "each run of a task that had a retry policy or was run again "
                                "(the latest 50; README Retries)"},
}, ["task_id", "status"])

TASK_SUMMARY = obj({k: NULL_STR for k in ("task_id", "status", "function_id", "endpoint_id",
                                          "task_group_id", "created_at", "completion_t")},
                   ["task_id", "status", "function_id", "endpoint_id", "task_group_id",
                    "created_at", "completion_t"])

ENDPOINT_VIEW = obj({
    "uuid": STR, "name": NULL_STR, "display_name": NULL_STR, "owner": NULL_STR, "public": BOOL,
    "metadata": ANY_OBJECT, "created_at": NULL_STR,
    "limits": {**ANY_OBJECT, "description": "the owner's bounds on every task: max_walltime "
                                            "(seconds), mem_per_worker (GB)"},
    "status": {"type": "string", "enum": ["online", "offline"]},
}, ["uuid", "name", "display_name", "owner", "public", "metadata", "created_at"])

ENDPOINT_LIMITS = obj({"max_walltime": {**NUM, "exclusiveMinimum": True, "minimum": 0},
                       "mem_per_worker": {**NUM, "exclusiveMinimum": True, "minimum": 0}},
                      extra=False)

FUNCTION_FIELDS = {
    "function_name": opt(STR, "a name; with serialized=false, the name of the function the "
                              "source defines"),
    "function_code": {**STR, "minLength": 1, "pattern": r"\S",
                      "description": "the packed serialized function (or raw source when "
                                     "serialized=false); not blank"},
    "serialized": opt(BOOL, "false: function_code is raw Python source (4.x "
                            "register_source_code)"),
    "meta": opt(ANY_OBJECT, "free-form metadata (v3)"),
    "metadata": opt(ANY_OBJECT, "free-form metadata (alias of meta)"),
    "description": opt(STR),
    "public": opt(BOOL),
    "searchable": opt(BOOL),
    "group": opt(UUID, "a group of the caller to share the function with (empty: none)"),
    "container_uuid": opt(UUID, "a registered container (1.0 API; empty: none)"),
    "entry_point": opt(STR),
}

SCHEMAS: dict[str, dict] = {
    "Error": obj({"code": {**STR, "example": error_codes.TASK_PAYLOAD_TOO_LARGE}, "message": STR,
                  "http_status_code": INT}, ["code", "message", "http_status_code"],
                 description="The body of every non-2xx answer."),
    "Version": obj({"api": STR, "min_sdk_version": STR, "min_ep_version": STR,
                    "web-service": STR, "service": STR, "max_tasks_per_submit": INT},
                   ["api", "min_sdk_version", "min_ep_version"]),
    "ClientCredentials": obj({"client_id": STR, "client_secret": STR},
                             ["client_id", "client_secret"]),
    "AccessToken": obj({"access_token": STR, "token_type": {"type": "string", "enum": ["Bearer"]},
                        "expires_in": INT}, ["access_token", "token_type", "expires_in"]),
    "WhoAmI": obj({"user_id": STR, "username": STR}, ["user_id", "username"]),
    "Logout": obj({"revoked": BOOL}, ["revoked"]),
    "FunctionRegistration": obj(FUNCTION_FIELDS, ["function_code"]),
    "FunctionId": obj({"function_uuid": STR, "function_name": STR, "version": {**INT, "nullable": True},
                       "reused": {**BOOL, "description": "true: this content was registered "
                                  "already; its id is answered (no duplicate)"}},
                      ["function_uuid"]),
    "Function": obj({
        "function_uuid": STR, "function_name": NULL_STR, "function_code": NULL_STR,
        "description": NULL_STR, "container_uuid": NULL_STR, "public": BOOL, "searchable": BOOL,
        "group": NULL_STR, "metadata": ANY_OBJECT,
        "version": {"type": "integer", "nullable": True, "description": "n-th registration of this "
                    "name by its owner (null: registered before versions)"},
    }, ["function_uuid", "function_name", "function_code", "description", "metadata"]),
    "FunctionDeleted": obj({"result": INT, "function_uuid": STR}, ["result", "function_uuid"]),
    "FunctionSearch": obj({
        "total": INT, "offset": INT, "limit": INT,
        "results": arr(obj({
            "function_uuid": STR, "function_name": NULL_STR, "description": STR,
            "owner": NULL_STR, "public": BOOL, "mine": BOOL, "group": NULL_STR,
            "created_at": NULL_STR, "version": {"type": "integer", "nullable": True},
            "latest": {**BOOL, "description": "the caller's own latest version of its name"},
        }, ["function_uuid", "function_name", "description", "owner", "public", "mine"])),
    }, ["total", "offset", "limit", "results"]),
    "SubmitV3": obj({
        "tasks": obj({}, description="function id → the serialized payloads, one task each",
                     extra=arr(STR)),
        "task_group_id": opt(UUID, "minted by the service when absent"),
        "create_queue": opt(BOOL), "user_runtime": opt(ANY_OBJECT),
        "resource_specification": opt(ANY_OBJECT),
        "user_endpoint_config": opt(ANY_OBJECT, "values for a multi-user endpoint's user "
                                    "config template, checked against the JSON schema it "
                                    "publishes (400 USER_ENDPOINT_CONFIG_INVALID); ignored "
                                    "by other endpoints"),
        "result_serializers": opt({**arr(STR), "maxItems": 16},
                                  "strategy import paths (e.g. funcx.serialize.JSONData or "
                                  "globus_compute_sdk.serialize.JSONData) the endpoint "
                                  "serializes each result with, the first that can; 400 "
                                  "RESULT_SERIALIZERS_INVALID for an unknown one"),
        "retry_policy": opt(obj({
            "retries": {**INT, "minimum": 0, "maximum": 100},
            "retry_on": {**arr({**STR, "pattern": "^[A-Za-z_][A-Za-z0-9_.]*$"}), "maxItems": 32},
        }, extra=False), "re-runs on the endpoint of a task failing with an exception whose "
                         "class or a base is named in retry_on (any when empty); 400 "
                         "RETRY_POLICY_INVALID beyond these bounds (README Retries)"),
    }, ["tasks"]),
    "SubmitV3Result": obj({
        "request_id": STR, "task_group_id": STR, "endpoint_id": STR,
        "tasks": obj({}, description="function id (exactly as sent) → task ids, in order",
                     extra=arr(STR)),
    }, ["request_id", "task_group_id", "endpoint_id", "tasks"]),
    "SubmitV2": obj({
        "tasks": arr(arr(STR, minItems=3), description="[function_id, endpoint_id, payload]"),
        "task_group_id": opt(UUID, "minted by the service when absent"),
    }, ["tasks"]),
    "SubmitV2Result": obj({
        "response": {"type": "string", "enum": ["batch"]}, "task_group_id": STR,
        "results": arr(obj({
            "status": {"type": "string", "enum": ["Success", "Failed"]},
            "task_uuid": STR, "http_status_code": INT, "code": STR, "reason": STR,
        }, ["status", "http_status_code"])),
    }, ["response", "task_group_id", "results"]),
    "TaskDocument": TASK_DOCUMENT,
    "TaskList": obj({"tasks": arr(TASK_SUMMARY)}, ["tasks"]),
    "TaskCancel": obj({"task_id": STR, "cancelled": BOOL, "status": NULL_STR},
                      ["task_id", "cancelled", "status"]),
    "TasksCancel": obj({"results": obj({}, extra=obj(
        {"cancelled": BOOL, "status": NULL_STR, "reason": STR}, ["cancelled", "status"]))},
        ["results"]),
    "BatchStatusRequest": obj({"task_ids": arr(UUID, maxItems=int(setting("BATCH_STATUS_MAX")))},
                              ["task_ids"]),
    "BatchStatus": obj({"response": {"type": "string", "enum": ["batch"]},
                        "results": obj({}, extra=ref("TaskDocument"))},
                       ["response", "results"]),
    "TaskGroup": obj({"taskgroup_id": STR, "tasks": arr(obj({"id": STR, "created_at": NULL_STR},
                                                            ["id", "created_at"]))},
                     ["taskgroup_id", "tasks"]),
    "TaskGroupEvents": obj({"taskgroup_id": STR, "last_id": STR, "tasks": arr(ref("TaskDocument"))},
                           ["taskgroup_id", "last_id", "tasks"]),
    "EndpointRegistrationRequest": obj({
        "endpoint_name": opt(STR, "required unless display_name is given (not empty)"),
        "display_name": opt(STR, "also the name when endpoint_name is missing or empty"),
        "metadata": opt(ANY_OBJECT),
        "allowed_functions": opt(arr(UUID), "restrict the endpoint to these functions "
                                            "([] lifts the restriction)"),
        "public": opt(BOOL),
        "limits": opt(ENDPOINT_LIMITS, "the owner's bounds on every task (a submit asking "
                                       "for more is refused)"),
        "endpoint_id": opt(UUID, "POST only: re-register this id"),
        "endpoint_uuid": opt(UUID, "POST only: alias of endpoint_id"),
    }, anyOf=[{"required": [k], "properties": {k: {"type": "string", "minLength": 1}}}
              for k in ("endpoint_name", "display_name")]),
    "EndpointRegistration": obj({
        "endpoint_id": STR, "name": STR, "redis_url": STR, "task_stream": STR,
        "result_stream": STR, "status_key": STR, "cancelled_key": STR,
        "function_key_prefix": STR, "container_key_prefix": STR, "agent_group": STR,
        "agent_consumer": STR, "heartbeat_period": NUM, "heartbeat_threshold": NUM,
        "redis_ca": opt(STR, "PEM text of the CA that signs the Redis certificate, present when "
                             "redis_url is rediss:// and the service has one configured; else "
                             "the agent verifies with its CA bundle or the system store"),
    }, ["endpoint_id", "name", "redis_url", "task_stream", "result_stream", "status_key"],
        description="What the endpoint agent needs to connect (credentials rotate on every "
                    "registration)."),
    "Endpoint": ENDPOINT_VIEW,
    "EndpointList": arr(ENDPOINT_VIEW),
    "EndpointStatus": obj({
        "status": {"type": "string", "enum": ["online", "offline"]},
        "details": obj({"total_workers": INT, "idle_workers": INT, "managers": INT,
                        "pending_tasks": INT, "outstanding_tasks": INT,
                        "heartbeat_t": NULL_STR, "problems": arr(PROBLEM),
                        "interchange_address": {**NULL_STR, "description": "the URL managers "
                                                "are told to connect to"}},
                       ["total_workers", "idle_workers", "managers", "pending_tasks",
                        "outstanding_tasks"]),
    }, ["status", "details"]),
    "EndpointDeleted": obj({"result": INT, "endpoint_id": STR, "failed_tasks": INT},
                           ["result", "endpoint_id", "failed_tasks"]),
    "EndpointLock": obj({"endpoint_id": STR, "lock_expiration": NUM},
                        ["endpoint_id", "lock_expiration"]),
    "AllowedFunctions": obj({"endpoint_id": STR, "restricted": BOOL, "functions": arr(STR)},
                            ["endpoint_id", "restricted", "functions"]),
    "WhitelistRequest": obj({"func": arr(UUID)}, ["func"]),
    "Whitelist": obj({"status": {"type": "string", "enum": ["Success"]}, "result": arr(STR)},
                     ["status", "result"]),
    "GroupCreate": obj({"name": {**STR, "minLength": 1, "pattern": r"\S",
                                 "description": "not blank"}, "description": opt(STR)},
                       ["name"]),
    "GroupCreated": obj({"group_id": STR, "name": STR}, ["group_id", "name"]),
    "GroupList": obj({"groups": arr(obj({
        "group_id": STR, "name": STR, "owner": STR, "description": STR, "created_at": STR,
        "members": {**INT, "description": "how many members (local mode)"},
    }, ["group_id"]))}, ["groups"]),
    "Group": obj({"group_id": STR, "name": STR, "owner": STR, "description": STR,
                  "created_at": STR, "members": arr(STR)}, ["group_id", "owner", "members"]),
    "GroupMemberRequest": obj({"user": {**STR, "description": "a user name or user id"}},
                              ["user"]),
    "GroupMemberAdded": obj({"group_id": STR, "added": STR}, ["group_id", "added"]),
    "GroupMemberRemoved": obj({"group_id": STR, "removed": STR}, ["group_id", "removed"]),
    "ContainerCreate": obj({
        "type": {**STR, "enum": list(CONTAINER_TYPES), "description": "case-insensitive"},
        "location": {**STR, "description": "the image location"},
        "name": opt(STR), "description": opt(STR),
        "public": opt(BOOL, "readable and usable by anyone (default: its owner only)"),
    }, ["type", "location"]),
    "ContainerId": obj({"container_id": STR}, ["container_id"]),
    "Container": obj({"container_id": STR, "name": STR, "description": STR, "type": STR,
                      "location": STR, "created_at": STR, "public": BOOL},
                     ["container_id", "type", "location"]),
    "ContainerList": obj({"containers": arr(ref("Container"))}, ["containers"]),
    "ContainerRecord": obj({"container": ref("Container")}, ["container"]),
}


def _error(description: str, headers: dict | None = None) -> dict:
    out = {"description": description,
           "content": {"application/json": {"schema": ref("Error")}}}
    if headers:
        out["headers"] = headers
    return out


_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying",
                                "schema": {"type": "string"}}}

RESPONSES: dict[str, dict] = {
    "400": _error("Bad request: a body that is not a JSON object, a missing or mistyped field, "
                  "an invalid UUID, a bad query parameter."),
    "401": _error("No bearer token, or one that is unknown, expired or revoked (or, on "
                  "/v2/auth/token, a wrong client id or secret).",
                  {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    "403": _error("The caller may see the resource but not change it (or run that function "
                  "there)."),
    "404": _error("Unknown, or not visible to the caller (no existence leak)."),
    "409": _error("The Idempotency-Key was already used for a different request "
                  "(code IDEMPOTENCY_KEY_REUSED)."),
    "413": _error("The request body or one task payload exceeds the payload limit "
                  "(code TASK_PAYLOAD_TOO_LARGE), or a submit has more tasks than "
                  "FUNCX_MAX_TASKS_PER_SUBMIT (code TOO_MANY_TASKS)."),
    "429": _error("Rate limited (per identity; FUNCX_RATE_LIMIT_READ / _WRITE; code "
                  "RATE_LIMITED), a submit past the caller's quota (QUOTA_QUEUED_TASKS, "
                  "QUOTA_STORED_BYTES), or too many long-polls open (LONGPOLL_LIMIT).",
                  _RETRY_AFTER),
    "503": _error("The service's store (Redis) is unavailable; retry shortly.", _RETRY_AFTER),
    "507": _error("The service's store (Redis) is full (maxmemory): nothing was written "
                  "(code STORE_FULL).", _RETRY_AFTER),
}
