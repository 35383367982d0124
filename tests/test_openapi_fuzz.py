"""Schemathesis against the live service, from its own OpenAPI document.

Every operation is fuzzed (coverage phase + up to MAX_EXAMPLES generated
cases each, deterministic), and every answer is checked: no 5xx, the status
code documented, the content type and the body as documented.

The fuzz runs as a user of its own (``openapi-fuzz``), so what it creates,
deletes and revokes never touches the session's user, and its requests count
against its own rate limits.  Half of the cases of an operation with an id in
its path (and some bodies) get the ids of real resources of that user, made
up front, so the routes are exercised past "404 not found" (such a DELETE of
an endpoint or function gets a fresh one); POST /v2/logout always gets a
fresh token.  Requests are paced under the per-identity write limit.  The
fuzz user's endpoints (and their Redis ACL users) are removed at the end.
"""
from __future__ import annotations

import collections
import time

import pytest
import requests
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.slow


def _pytest_nodeid_shim() -> None:
    """schemathesis 4.32's lazy schemas (``from_fixture``) read and rename
    ``request.node._nodeid``, which pytest 9.2 replaced with a structured
    ``_id``; give it back as a property with the old meaning."""
    from _pytest import nodes

    if hasattr(nodes.Node, "_nodeid") or not hasattr(nodes, "coerce_node_id"):
        return

    def _set(node, value: str) -> None:
        node._id = nodes.coerce_node_id(value)

    nodes.Node._nodeid = property(lambda node: node.nodeid, _set)


_pytest_nodeid_shim()

MAX_EXAMPLES = 25
SEED = 20240601
TIME_BUDGET_S = 150  # fuzzing stops sending requests after this; the whole run stays < 3 min
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
PAYLOAD = "00\ngASVBQAAAAAAAABLB4WULg==\n"  # (7,) as serialized arguments (API.md)

WRITE_METHODS = {"POST", "PUT", "DELETE", "PATCH"}


class WritePacer:
    """Keeps the fuzz user's writes under the service's per-identity write
    limit (FUNCX_RATE_LIMIT_WRITE, a moving window): without it the last
    operations of the run would only ever see 429."""

    def __init__(self):
        import limits

        from funcx.defaults import setting

        item = limits.parse(str(setting("RATE_LIMIT_WRITE")))
        self.budget, self.window = int(item.amount * 0.85), float(item.get_expiry())
        self.sent: collections.deque = collections.deque()

    def __call__(self, method: str) -> None:
        if method.upper() not in WRITE_METHODS:
            return
        now = time.monotonic()
        while self.sent and now - self.sent[0] > self.window:
            self.sent.popleft()
        if len(self.sent) >= self.budget:
            time.sleep(self.window - (now - self.sent[0]) + 0.1)
        self.sent.append(time.monotonic())


PACE = WritePacer()
STATS = {"cases": 0, "by_status": collections.Counter(), "server_errors": [],
         "operations": set(), "started": None,
         "by_operation": collections.defaultdict(collections.Counter)}


class Fuzz:
    """The fuzz user, its token, and real resources to aim at."""

    def __init__(self, base: str, redis_client):
        from backend.store import users

        self.base, self.r, self.users = base, redis_client, users
        self.uid = users.create_user(redis_client, "openapi-fuzz")
        self.token = users.issue_token(redis_client, self.uid)
        self.s = requests.Session()
        self.s.headers["Authorization"] = f"Bearer {self.token}"
        self.client_id, self.client_secret = users.create_client(redis_client, self.uid, "fuzz")
        self.member = "openapi-fuzz-member"
        users.create_user(redis_client, self.member)
        self.fid = self.new_function()
        self.eid = self.new_endpoint()
        sub = self.call("post", f"/v3/endpoints/{self.eid}/submit",
                        {"tasks": {self.fid: [PAYLOAD]}})
        self.tid, self.tg = sub["tasks"][self.fid][0], sub["task_group_id"]
        self.gid = self.call("post", "/v2/groups", {"name": "openapi-fuzz"})["group_id"]
        self.call("post", f"/v2/groups/{self.gid}/members", {"user": self.member})
        self.cid = self.call("post", "/v2/containers",
                             {"type": "docker", "location": "docker.io/python:3.11"})["container_id"]
        self.real = {"eid": self.eid, "fid": self.fid, "tid": self.tid, "tg": self.tg,
                     "gid": self.gid, "cid": self.cid, "ctype": "docker", "user": self.member}

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        PACE(method)
        resp = self.s.request(method, self.base + path, json=body, timeout=30)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        return resp.json()

    def new_function(self) -> str:
        return self.call("post", "/v3/functions", {"function_name": "fuzzed",
                                                   "function_code": "10\nfuzz"})["function_uuid"]

    def new_endpoint(self) -> str:
        return self.call("post", "/v3/endpoints", {"endpoint_name": "openapi-fuzz"})["endpoint_id"]

    def cleanup(self) -> None:
        from backend.store import endpoints as ep_store
        from funcx.protocol import keys

        for eid in self.r.smembers(keys.user_endpoints(self.uid)):
            ep_store.delete(self.r, eid, self.uid)

    def aim(self, case, n: int) -> str:
        """Point every other case at real resources; return the token to send."""
        op_id = case.operation.definition.raw.get("operationId", "")
        if op_id == "logout":
            return self.users.issue_token(self.r, self.uid)
        if n % 2 == 0:
            return self.token
        params = case.path_parameters or {}
        for name in params:
            if name in self.real:
                params[name] = self.real[name]
        if case.method.upper() == "DELETE" and "whitelist" not in case.path \
                and "members" not in case.path:
            if "eid" in params:
                params["eid"] = self.new_endpoint()
            if "fid" in params:
                params["fid"] = self.new_function()
        body = case.body if isinstance(case.body, dict) else None
        if body is not None:
            if op_id == "submitV3" and isinstance(body.get("tasks"), dict) and body["tasks"]:
                body["tasks"] = {self.fid: next(iter(body["tasks"].values()))}
            elif op_id == "submitV2" and isinstance(body.get("tasks"), list) and body["tasks"]:
                first = body["tasks"][0]
                body["tasks"][0] = [self.fid, self.eid, *(first[2:3] if isinstance(first, list)
                                                          else [PAYLOAD])]
            elif op_id == "batchStatus" and isinstance(body.get("task_ids"), list):
                body["task_ids"].append(self.tid)
            elif op_id == "clientCredentials":
                body["client_id"] = self.client_id
                if n % 4 == 1:
                    body["client_secret"] = self.client_secret
            elif op_id == "addWhitelist" and isinstance(body.get("func"), list):
                body["func"].append(self.fid)
            elif op_id == "addGroupMember":
                body["user"] = self.member
            elif op_id in ("registerFunctionV3", "registerFunctionV2") and "group" in body:
                body["group"] = self.gid
        return self.token


@pytest.fixture(scope="module")
def fuzz(service, redis_client, request):
    env = Fuzz(service, redis_client)
    STATS["started"] = time.monotonic()
    yield env
    env.cleanup()
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"\nopenapi fuzz: {STATS['cases']} cases over {len(STATS['operations'])} operations "
            f"in {time.monotonic() - STATS['started']:.0f}s; statuses "
            f"{dict(sorted(STATS['by_status'].items()))}; 5xx: {len(STATS['server_errors'])}")
        if request.config.getoption("verbose") > 0:
            for label, statuses in sorted(STATS["by_operation"].items()):
                reporter.write_line(f"  {label}: {dict(sorted(statuses.items()))}")


@pytest.fixture(scope="module")
def fuzz_schema(service, fuzz):
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "suppress-health-check": ["all"],
        "base-url": service,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True,
                       "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    })
    raw = requests.get(f"{service}/v2/openapi.json", timeout=30).json()
    # from_dict, not from_url: from_url leaves out GET /v2/openapi.json itself
    return schemathesis.openapi.from_dict(raw, config=config)


schema = schemathesis.pytest.from_fixture("fuzz_schema")
_counts: collections.Counter = collections.Counter()


@schema.parametrize()
def test_fuzz(case, fuzz):
    label = f"{case.operation.method.upper()} {case.operation.path}"
    STATS["operations"].add(label)
    if time.monotonic() - STATS["started"] > TIME_BUDGET_S:
        return
    _counts[label] += 1
    token = fuzz.aim(case, _counts[label])
    STATS["cases"] += 1
    PACE(case.method)
    resp = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    STATS["by_status"][resp.status_code] += 1
    STATS["by_operation"][label][resp.status_code] += 1
    if resp.status_code >= 500:
        STATS["server_errors"].append((label, resp.status_code, resp.text[:200]))
    case.validate_response(resp, checks=CHECKS)


def test_fuzz_covered_every_operation(fuzz_schema):
    documented = {f"{m.upper()} {p}" for p, item in fuzz_schema.raw_schema["paths"].items()
                  for m in item}
    assert STATS["operations"] == documented
    assert all(_counts[label] > 0 for label in documented), "an operation got no request"
    assert not STATS["server_errors"], STATS["server_errors"]
