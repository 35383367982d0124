"""What the service does with a multi-user endpoint's published identity mapping
rules and user config schema (security review of issue 19, H1), against a real
service: hostile rules or schemas are refused at registration with
MULTI_USER_METADATA_INVALID (never a 500), the service runs rules only for an
endpoint whose owner is a multi-user administrator, and a catastrophic-backtracking
rule published by anyone else never stalls the service for other users."""
from __future__ import annotations

import json
import time
import uuid

import pytest
import requests

from funcx.protocol import error_codes
from funcx.protocol import identity_mapping as im
from funcx.serialize import FuncXSerializer

SER = FuncXSerializer()
PAYLOAD = SER.serialize_payload((21,), {})
#: how long a submit may take here: far less than a backtracking rule would hold it
PROMPT_S = 10


def double(x):
    return 2 * x


def _rules(*mappings: dict) -> list:
    return [{"DATA_TYPE": im.EXPRESSION, "mappings": list(mappings)}]


def _rule(source: str = "{username}", match: str = "(.*)", output: str = "{0}") -> dict:
    return {"source": source, "match": match, "output": output}


class User:
    """A service user made for the test, speaking HTTP to the real service."""

    def __init__(self, service: str, r, admin: bool = False):
        from backend import admin as adm

        self.service = service
        rec = adm.add_user(r, f"mu-{uuid.uuid4().hex[:8]}")
        self.name, self.uid = rec["user"], rec["user_id"]
        self.headers = {"Authorization": f"Bearer {rec['token']}"}
        if admin:
            adm.set_multi_user_admin(r, self.name)

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.service + path, headers=self.headers,
                                timeout=PROMPT_S, **kw)

    def register(self, metadata: dict) -> requests.Response:
        return self.call("POST", "/v3/endpoints", json={
            "endpoint_name": f"mu-{uuid.uuid4().hex[:8]}", "public": True,
            "metadata": metadata})

    def function(self) -> str:
        resp = self.call("POST", "/v2/functions", json={
            "function_name": "double", "function_code": SER.serialize_function(double),
            "description": uuid.uuid4().hex})
        assert resp.status_code == 200, resp.text
        return resp.json()["function_uuid"]

    def submit(self, eid: str, **extra) -> requests.Response:
        return self.call("POST", f"/v3/endpoints/{eid}/submit",
                         json={"tasks": {self.function(): [PAYLOAD]}, **extra})


@pytest.fixture(scope="module")
def users(service, redis_client):
    return {"admin": User(service, redis_client, admin=True),
            "owner": User(service, redis_client), "bob": User(service, redis_client)}


@pytest.mark.parametrize("metadata, words", [
    ({"identity_mapping": _rules(_rule(source="{username:>2000000000}"))}, "format spec"),
    ({"identity_mapping": _rules(_rule(source="{username!r}"))}, "format spec"),
    ({"identity_mapping": _rules(_rule(output="{0:>2000000000}"))}, "format spec"),
    ({"identity_mapping": _rules(_rule(output="{username.__class__}"))}, "is not one of"),
    ({"identity_mapping": _rules(_rule(source="a" * 300 + "{username}"))}, "over 256"),
    ({"identity_mapping": _rules(_rule(match="(a+)+" * 60))}, "over 256"),
    ({"identity_mapping": _rules(*[_rule()] * (im.MAX_RULES + 1))}, "expression rules, over"),
    ({"identity_mapping": _rules(_rule(match="("))}, "regular expression"),
    ({"identity_mapping": {"DATA_TYPE": "nope"}}, "DATA_TYPE"),
    ({"user_config_schema": {"type": 7}}, "user_config_schema"),
    ({"user_config_schema": {"properties": {"a": {"type": "string", "pattern": "("}}}},
     "regex"),
    ({"user_config_schema": "not an object"}, "JSON object"),
    ({"user_config_schema": {"description": "x" * 70000}}, "over 65536"),
])
def test_registration_refuses_hostile_rules_and_schemas(users, metadata, words):
    for who in ("owner", "admin"):  # refused whoever registers them
        t0 = time.monotonic()
        resp = users[who].register({"multi_user": True, **metadata})
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["code"] == error_codes.MULTI_USER_METADATA_INVALID
        assert words in body["message"]
        assert time.monotonic() - t0 < PROMPT_S


def test_a_backtracking_rule_of_a_non_admin_never_runs_in_the_service(users):
    # within every bound, but (a+)+ against 200 a's and a name backtracks ~2**200 steps
    evil = {"multi_user": True, "identity_mapping": _rules(
        _rule(source="a" * 200 + "{username}", match="(a+)+", output="nobody")),
        "user_config_schema": {"type": "object",
                               "properties": {"w": {"type": "string", "pattern": "^(a+)+$"}}}}
    resp = users["owner"].register(evil)
    assert resp.status_code == 200, resp.text
    eid = resp.json()["endpoint_id"]
    t0 = time.monotonic()
    # bob's submit reaches the endpoint (which maps for itself), promptly
    resp = users["bob"].submit(eid, user_endpoint_config={"w": "a" * 40 + "b"})
    assert resp.status_code == 200, resp.text
    assert time.monotonic() - t0 < PROMPT_S
    # and others' submits still work
    plain = users["bob"].register({})
    assert plain.status_code == 200
    assert users["admin"].submit(eid).status_code == 200
    assert time.monotonic() - t0 < PROMPT_S
    # a user_endpoint_config is still bounded in shape and size
    resp = users["bob"].submit(eid, user_endpoint_config={"w": "x" * 20000})
    assert (resp.status_code, resp.json()["code"]) == (400,
                                                      error_codes.USER_ENDPOINT_CONFIG_INVALID)


def test_an_admins_rules_and_schema_are_applied_at_submit(users, redis_client):
    meta = {"multi_user": True,
            "identity_mapping": _rules(_rule(match=f"({users['owner'].name})")),
            "user_config_schema": {"type": "object", "additionalProperties": False,
                                   "properties": {"workers": {"type": "integer",
                                                              "maximum": 4}}}}
    resp = users["admin"].register(meta)
    assert resp.status_code == 200, resp.text
    eid = resp.json()["endpoint_id"]
    assert users["owner"].submit(eid, user_endpoint_config={"workers": 2}).status_code == 200
    resp = users["bob"].submit(eid)
    assert (resp.status_code, resp.json()["code"]) == (403, error_codes.IDENTITY_UNMAPPED)
    resp = users["owner"].submit(eid, user_endpoint_config={"workers": 9})
    assert (resp.status_code, resp.json()["code"]) == (400,
                                                      error_codes.USER_ENDPOINT_CONFIG_INVALID)
    # a schema stored before registration checked it: a 400 with the code, never a 500
    from funcx.protocol import keys

    meta["user_config_schema"] = {"type": 7}
    redis_client.hset(keys.endpoint(eid), "metadata", json.dumps(meta))
    resp = users["owner"].submit(eid, user_endpoint_config={"workers": 2})
    assert (resp.status_code, resp.json()["code"]) == (400,
                                                      error_codes.USER_ENDPOINT_CONFIG_INVALID)
    # the same rules, once the owner is no administrator, are not run here
    from backend import admin as adm

    redis_client.hset(keys.endpoint(eid), "metadata", json.dumps(
        {**meta, "user_config_schema": {"type": "object"}}))
    adm.set_multi_user_admin(redis_client, users["admin"].name, False)
    try:
        assert users["bob"].submit(eid).status_code == 200
    finally:
        adm.set_multi_user_admin(redis_client, users["admin"].name, True)


def test_the_admin_command_grants_and_revokes(users, redis_client, funcx_home):
    from typer.testing import CliRunner

    from backend.store.users import is_multi_user_admin
    from funcx_cli.main import app

    name = users["bob"].name
    runner = CliRunner()
    res = runner.invoke(app, ["admin", "user", "multi-user-admin", name])
    assert res.exit_code == 0, res.output
    assert is_multi_user_admin(redis_client, users["bob"].uid)
    res = runner.invoke(app, ["admin", "user", "multi-user-admin", name, "--revoke"])
    assert res.exit_code == 0 and "no longer" in res.output
    assert not is_multi_user_admin(redis_client, users["bob"].uid)
    res = runner.invoke(app, ["admin", "user", "multi-user-admin", "no-such-user-xyz"])
    assert res.exit_code != 0
