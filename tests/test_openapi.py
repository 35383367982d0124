"""The OpenAPI document: public, structurally valid, and describing exactly
the routes the app registers (a new route without a spec fails here)."""
from __future__ import annotations

import re

import pytest
import requests

PUBLIC_OPERATIONS = {("get", "/v2/version"), ("get", "/v2/openapi.json"),
                     ("post", "/v2/auth/token")}
METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture(scope="module")
def served(service) -> dict:
    resp = requests.get(f"{service}/v2/openapi.json", timeout=30)  # no token: public
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.json()


@pytest.fixture(scope="module")
def app(service):
    from live import service_redis_url

    from backend.app import create_app

    return create_app(service_redis_url())


def operations(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_served_document_is_the_built_one(served):
    from backend.openapi import SPEC

    assert served == SPEC


def test_document_is_valid_openapi_3_0(served):
    from schemathesis.specs.openapi.definitions import OPENAPI_30_VALIDATOR

    assert served["openapi"] == "3.0.3"
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
              for e in OPENAPI_30_VALIDATOR.iter_errors(served)]
    assert not errors, errors
    assert "Globus Compute" in served["info"]["description"]


def test_schemathesis_loads_every_operation(served):
    import schemathesis
    from schemathesis.core.result import Ok

    # from_dict: from_url would leave out the operation serving the document itself
    schema = schemathesis.openapi.from_dict(served)
    results = list(schema.get_all_operations())
    bad = [r.err() for r in results if not isinstance(r, Ok)]
    assert not bad, bad
    assert len(results) == sum(1 for _ in operations(served))


def test_every_reference_resolves(served):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                resolve(served, node)  # KeyError if dangling
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(served)


def test_paths_and_methods_match_the_app(app, served):
    def spec_path(rule: str) -> str:
        return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)

    registered = {(m.lower(), spec_path(rule.rule)) for rule in app.url_map.iter_rules()
                  if rule.endpoint != "static"  # Flask's default static route: no files served
                  for m in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(m, p) for m, p, _ in operations(served)}
    assert registered - documented == set(), "routes without an OpenAPI operation"
    assert documented - registered == set(), "OpenAPI operations without a route"


def test_operations_are_complete(served):
    ids = []
    for method, path, op in operations(served):
        where = f"{method.upper()} {path}"
        ids.append(op["operationId"])
        codes = set(op["responses"])
        assert "200" in codes, where
        content = op["responses"]["200"]["content"]
        if "application/octet-stream" in content:  # the binary path's result bytes only
            assert (method, path) == ("get", "/v3/tasks/{tid}/result"), where
            assert content["application/octet-stream"]["schema"]["format"] == "binary", where
        else:
            ok = content["application/json"]["schema"]
            assert resolve(served, ok).get("type") in ("object", "array"), where
        for code, resp in op["responses"].items():
            if code != "200":
                error = resolve(served, resp)["content"]["application/json"]["schema"]
                assert error == {"$ref": "#/components/schemas/Error"}, where
        # path parameters: declared exactly as templated, required
        templated = set(re.findall(r"{([^}]+)}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert templated == declared, where
        assert all(p["required"] for p in op.get("parameters", []) if p["in"] == "path")
        if (method, path) in PUBLIC_OPERATIONS:
            assert op.get("security") == [], where
        else:
            assert "security" not in op, where  # the document's default: bearerAuth
            assert {"401", "429", "503"} <= codes, where
        if "requestBody" in op:
            assert {"400", "413"} <= codes, where
            body = resolve(served, op["requestBody"]["content"]["application/json"]["schema"])
            assert body["type"] == "object" and body.get("additionalProperties", True), where
        if "{" in path:
            assert {"400", "404"} <= codes, where
    assert len(ids) == len(set(ids)), "operationIds must be unique"
    assert served["security"] == [{"bearerAuth": []}]
    assert served["components"]["securitySchemes"]["bearerAuth"] == {
        **served["components"]["securitySchemes"]["bearerAuth"], "type": "http",
        "scheme": "bearer"}
    assert set(served["components"]["schemas"]["Error"]["required"]) == {
        "code", "message", "http_status_code"}


def test_error_answers_match_the_error_schema(service, served):
    """A few real error answers, validated against the documented schemas."""
    import jsonschema_rs

    error = served["components"]["schemas"]["Error"]
    validator = jsonschema_rs.Draft4Validator(error)
    for method, url, kw, status in (
            ("get", "/v2/whoami", {}, 401),
            ("post", "/v2/auth/token", {"json": {"client_id": "x", "client_secret": "y"}}, 401),
            ("post", "/v2/auth/token", {"data": "not json"}, 400)):
        resp = requests.request(method, f"{service}{url}", timeout=30, **kw)
        assert resp.status_code == status
        assert str(status) in served["paths"][url][method]["responses"]
        validator.validate(resp.json())


# ------------------------------------------------------------------------------------------
# Odd input answers a documented 4xx, never a 5xx (found while fuzzing the document).

@pytest.mark.parametrize("path, body", [
    ("/v2/auth/token", '{"client_id": "\\ud800", "client_secret": "x"}'),  # public route
    ("/v3/functions", '{"function_code": "x\\udfff"}'),
    ("/v3/endpoints", '{"endpoint_name": "e\\ud800"}'),
    ("/v3/functions", "[" * 100_000),
    ("/v3/endpoints", '{"metadata": ' * 50_000),
])
def test_malformed_json_bodies_are_400(http, path, body):
    resp = http.post(f"{http.base_url}{path}", data=body.encode(),
                     headers={"Content-Type": "application/json"}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "BAD_REQUEST"


@pytest.fixture
def own_task_group(http):
    """A task group of the caller, on a throw-away endpoint (deleted afterwards)."""
    base = http.base_url
    fid = http.post(f"{base}/v3/functions", json={"function_code": "10\nx"}).json()["function_uuid"]
    eid = http.post(f"{base}/v3/endpoints", json={"endpoint_name": "openapi-longpoll"}).json()[
        "endpoint_id"]
    sub = http.post(f"{base}/v3/endpoints/{eid}/submit", json={"tasks": {fid: ["p"]}})
    assert sub.status_code == 200, sub.text
    yield sub.json()["task_group_id"]
    http.delete(f"{base}/v3/endpoints/{eid}")
    http.delete(f"{base}/v3/functions/{fid}")


def test_events_query_parameters_are_validated(http, own_task_group):
    url = f"{http.base_url}/v2/taskgroup/{own_task_group}/events"
    for params in ({"after": "²"}, {"after": "9" * 20}, {"after": "1-" + "9" * 20},
                   {"timeout": "nan"}, {"timeout": "soon"}):
        resp = http.get(url, params=params, timeout=30)
        assert resp.status_code == 400, (params, resp.text)
    assert http.get(url, params={"after": "1-0", "timeout": "-inf"}).status_code == 200


@pytest.mark.slow
def test_events_long_poll_outlasts_the_redis_socket_timeout(http, own_task_group):
    """A wait longer than the Redis client's socket timeout (5 s) is a quiet 200."""
    import time

    url = f"{http.base_url}/v2/taskgroup/{own_task_group}/events"
    start = time.monotonic()
    resp = http.get(url, params={"after": "$"}, timeout=30)
    resp = http.get(url, params={"after": resp.json()["last_id"], "timeout": 6}, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["tasks"] == [] and 5.5 < time.monotonic() - start < 15


# ------------------------------------------------------------------------------------------
# Real answers of a real endpoint (results, failures, liveness) conform to the document.

def _square(x):
    return x * x


def _fail(x):
    raise ValueError(f"no {x}")


def test_real_documents_conform(served, http, fxc, endpoint):
    import time

    import schemathesis

    schema = schemathesis.openapi.from_dict(served)
    base = http.base_url
    ok = fxc.run(7, endpoint_id=endpoint, function_id=fxc.register_function(_square))
    bad = fxc.run(7, endpoint_id=endpoint, function_id=fxc.register_function(_fail))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        docs = http.post(f"{base}/v2/batch_status", json={"task_ids": [ok, bad]}).json()["results"]
        if all("completion_t" in d for d in docs.values()):
            break
        time.sleep(0.2)
    assert docs[ok]["status"] == "success" and docs[bad]["status"] == "failed", docs
    tg = docs[ok]["task_group_id"]
    fid = fxc.register_function(_square)
    for method, path, url, kw in (
            ("GET", "/v2/tasks/{tid}", f"/v2/tasks/{ok}", {}),
            ("GET", "/v2/tasks/{tid}", f"/v2/tasks/{bad}", {}),
            ("POST", "/v2/batch_status", "/v2/batch_status", {"json": {"task_ids": [ok, bad]}}),
            ("GET", "/v2/taskgroup/{tg}", f"/v2/taskgroup/{tg}", {}),
            ("GET", "/v2/taskgroup/{tg}/events", f"/v2/taskgroup/{tg}/events", {}),
            ("GET", "/v2/tasks", "/v2/tasks", {"params": {"task_group_id": tg}}),
            ("POST", "/v2/tasks/{tid}/cancel", f"/v2/tasks/{ok}/cancel", {}),
            ("GET", "/v2/endpoints/{eid}/status", f"/v2/endpoints/{endpoint}/status", {}),
            ("GET", "/v3/endpoints/{eid}", f"/v3/endpoints/{endpoint}", {}),
            ("GET", "/v2/endpoints", "/v2/endpoints", {"params": {"role": "any"}}),
            ("GET", "/v2/functions/{fid}", f"/v2/functions/{fid}", {}),
            ("GET", "/v2/functions", "/v2/functions", {"params": {"q": "square"}}),
            ("GET", "/v2/whoami", "/v2/whoami", {}),
            ("GET", "/v2/version", "/v2/version", {"params": {"service": "all"}})):
        resp = http.request(method, base + url, timeout=30, **kw)
        assert resp.status_code == 200, (url, resp.text)
        schema[path][method].validate_response(resp)  # raises on a mismatch
    assert http.get(f"{base}/v2/endpoints/{endpoint}/status").json()["status"] == "online"
