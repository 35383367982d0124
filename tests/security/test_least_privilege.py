"""Least privilege at the endpoint's edge and in the service's own data.

An attacker here is an ordinary second user: they register endpoints, hold
those endpoints' Redis credentials, and use them for everything Redis would
let them do.  Each test proves the attack fails *and* that the session user's
task on the session endpoint, submitted before the attack, completes.
"""
from __future__ import annotations

import json
import os
import stat
import time
import uuid

import pytest
import redis
import requests
from tenants import SER, Tenant, double, new_user, session_task

from funcx.protocol.messages import Task


@pytest.fixture(scope="module")
def attacker(service, redis_client) -> Tenant:
    return new_user(service, redis_client, "mallory", timeout=30)


@pytest.fixture
def quiet(fxc, endpoint):
    """The session user's work, submitted before the attack; after the test
    body, its result must be there and right."""
    with session_task(fxc, endpoint, timeout=60) as tid:
        yield tid


def _agent(info: dict) -> redis.Redis:
    return redis.Redis.from_url(info["redis_url"], decode_responses=True,
                                socket_connect_timeout=5, socket_timeout=10)


def _refused(call) -> None:
    with pytest.raises(redis.ResponseError, match="NOPERM|no permissions"):
        call()


def _effective_commands(r: redis.Redis, rules) -> set[str]:
    """The commands an ACL rule list allows (Redis shows them compacted, e.g.
    ``+@transaction -watch``): categories expanded with ``ACL CAT``."""
    allowed: set[str] = set()
    for rule in (rules.split() if isinstance(rules, str) else rules):
        sign, what = rule[0], rule[1:].lower()
        if what == "@all":
            assert sign == "-", rule  # never +@all
            allowed.clear()
            continue
        names = set(r.acl_cat(what[1:])) if what.startswith("@") else {what}
        allowed = allowed | names if sign == "+" else allowed - names
    return allowed


# ---------------------------------------------------------------- the ACL user
def test_endpoint_acl_user_has_exactly_the_agents_commands(attacker, redis_client, quiet):
    from backend.store.endpoints import AGENT_COMMANDS

    mine, theirs = attacker.endpoint(), attacker.endpoint()
    eid = mine["endpoint_id"]
    granted = redis_client.acl_getuser(f"fxep-{eid}")
    line = next(u for u in redis_client.acl_list() if u.startswith(f"user fxep-{eid} "))
    rules = [w for w in line.split() if w[0] in "+-" and w[1:2] != "@" or w[1:2] == "@"]
    assert _effective_commands(redis_client, rules) == set(AGENT_COMMANDS), line
    assert not {"select", "keys", "scan", "eval", "evalsha", "config", "flushall", "flushdb",
                "xgroup", "rename", "client|kill", "acl"} & set(AGENT_COMMANDS)
    assert granted["keys"] == [f"fx:ep:{eid}:*"] and granted["channels"] == []

    agent = _agent(mine)
    # what the agent does, on its own keys, works
    status = mine["status_key"]
    with agent.pipeline(transaction=True) as p:
        p.hset(status, mapping={"heartbeat_t": repr(time.time()), "details": "{}"})
        p.expire(status, 60)
        p.execute()
    assert agent.xlen(mine["task_stream"]) == 0
    assert agent.xreadgroup(mine["agent_group"], mine["agent_consumer"],
                            {mine["task_stream"]: ">"}, count=1) == []
    assert agent.mget([mine["function_key_prefix"] + str(uuid.uuid4())]) == [None]
    assert agent.smismember(mine["cancelled_key"], ["x"]) == [0]
    assert agent.srem(mine["cancelled_key"], "x") == 0
    assert agent.delete(status) == 1
    # a large result's blob (issue 20): SET on its own prefix only
    assert agent.set(f"fx:ep:{eid}:blob:{uuid.uuid4()}", b"00\nraw", ex=60)

    secret = f"fx:task:{uuid.uuid4()}"
    redis_client.hset(secret, "payload", "secret")
    try:
        for forbidden in (
                lambda: agent.execute_command("SELECT", 1),  # no other database
                lambda: agent.execute_command("SELECT", 0),
                lambda: agent.hgetall(secret),  # the service's keys
                lambda: agent.delete(secret),
                lambda: agent.hgetall(f"fx:endpoint:{eid}"),  # even its own record
                lambda: agent.xlen(theirs["task_stream"]),  # another endpoint's keys
                lambda: agent.xadd(theirs["result_stream"], {"kind": "x"}),
                lambda: agent.set(f"fx:ep:{theirs['endpoint_id']}:blob:x", b"forged"),
                lambda: agent.set(secret, "overwritten"),
                lambda: agent.delete(theirs["status_key"]),
                lambda: agent.keys("*"),  # enumeration
                lambda: agent.scan(0),
                lambda: agent.config_get("*"),  # the server itself
                lambda: agent.config_set("maxmemory", "0"),
                lambda: agent.flushall(),
                lambda: agent.flushdb(),
                lambda: agent.eval("return redis.call('KEYS', '*')", 0),
                lambda: agent.execute_command("ACL", "LIST"),
                lambda: agent.execute_command("CLIENT", "LIST"),
                lambda: agent.execute_command("CLIENT", "KILL", "TYPE", "normal"),
                lambda: agent.execute_command("DEBUG", "SLEEP", "0"),
                lambda: agent.info(),
                lambda: agent.publish("fx", "x"),
                # its own keys, but commands the agent never sends
                lambda: agent.append(mine["status_key"], "x"),
                lambda: agent.getset(mine["status_key"], "x"),
                lambda: agent.execute_command("XGROUP", "DESTROY", mine["result_stream"],
                                              "ingester"),
                lambda: agent.rename(mine["result_stream"], mine["status_key"]),
                lambda: agent.incrby(f"fx:ep:{eid}:outstanding", -100),
                lambda: agent.execute_command("DUMP", mine["task_stream"]),
        ):
            _refused(forbidden)
        assert redis_client.hget(secret, "payload") == "secret"
        assert redis_client.exists(f"fx:endpoint:{eid}", f"fx:endpoint:{theirs['endpoint_id']}") == 2
    finally:
        redis_client.delete(secret)
        agent.close()


def test_an_agent_of_a_service_on_another_database_may_select_only_that_one(redis_client):
    """Redis ACLs cannot confine databases: the rules grant ``SELECT n`` for the
    service's own db only (none at all on db 0)."""
    from backend.store.endpoints import acl_rules

    eid, pw = str(uuid.uuid4()), uuid.uuid4().hex
    assert not [r for r in acl_rules(eid, pw) if "select" in r]
    user = f"fxep-{eid}"
    redis_client.execute_command("ACL", "SETUSER", user, *acl_rules(eid, pw, db=3))
    try:
        kw = redis_client.connection_pool.connection_kwargs
        agent = redis.Redis(host=kw["host"], port=kw["port"], username=user, password=pw, db=3,
                            decode_responses=True)
        assert agent.ping()  # connecting sent SELECT 3
        agent.hset(f"fx:ep:{eid}:status", "x", "1")
        for db in (0, 1, 2, 4):
            _refused(lambda db=db: agent.execute_command("SELECT", db))
        agent.close()
        assert not redis_client.exists(f"fx:ep:{eid}:status")  # it was db 3, not ours
    finally:
        redis_client.execute_command("ACL", "DELUSER", user)
        redis.Redis(host=kw["host"], port=kw["port"], password=kw["password"], db=3).flushdb()


# ------------------------------------------------------------ deleting endpoints
def test_deleting_an_endpoint_leaves_nothing_and_fails_only_its_own_tasks(
        attacker, service, token, redis_client, quiet):
    victim = Tenant(service, token, timeout=30)
    # the victim's task, queued on an endpoint of theirs that nobody runs
    parked = victim.endpoint()
    _, (victim_task,) = victim.submit(parked["endpoint_id"], victim.function())

    info = attacker.endpoint(allowed_functions=[str(uuid.uuid4())])
    eid = info["endpoint_id"]
    fid = attacker.function()
    attacker.ok("POST", f"/v2/endpoints/{eid}/whitelist", json={"func": [fid]})
    _, own = attacker.submit(eid, fid, n=2)
    agent = _agent(info)
    # the agent leaves state of its own behind...
    agent.hset(info["status_key"], mapping={"heartbeat_t": repr(time.time()), "details": "{}"})
    agent.srem(info["cancelled_key"], "x")
    # ...and forges a task entry naming the victim's task, so deleting the
    # endpoint would fail someone else's work
    agent.xadd(info["task_stream"], Task(task_id=victim_task, function_id=fid,
                                         payload="x").to_fields())
    agent.xadd(info["task_stream"], {"kind": "tasks", "v": "1", "meta": "not json"})
    assert redis_client.keys(f"fx:ep:{eid}:*")

    gone = attacker.ok("DELETE", f"/v2/endpoints/{eid}")
    assert gone["failed_tasks"] == 2

    leftovers = [k for pattern in (f"*{eid}*",) for k in redis_client.scan_iter(match=pattern)]
    assert leftovers == []
    assert f"fxep-{eid}" not in redis_client.acl_users()
    assert not redis_client.sismember("fx:endpoints", eid)
    assert attacker.call("GET", f"/v2/endpoints/{eid}").status_code == 404
    for tid in own:  # its own queued tasks fail, with the reason
        doc = attacker.ok("GET", f"/v2/tasks/{tid}")
        assert doc["status"] == "failed" and "EndpointDeleted" in doc["exception"], doc
    # the victim's task is untouched
    assert victim.ok("GET", f"/v2/tasks/{victim_task}")["status"] not in ("failed", "success")
    # the old credentials are dead, and its connection was dropped
    with pytest.raises((redis.AuthenticationError, redis.ResponseError, redis.ConnectionError)):
        agent.hset(info["status_key"], "x", "1")
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        _agent(info).ping()
    assert not redis_client.exists(info["status_key"])
    victim.ok("DELETE", f"/v2/endpoints/{parked['endpoint_id']}")


# ---------------------------------------------------------- the service's files
def _loose(root) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) & 0o077:
                out.append(f"{path} {oct(stat.S_IMODE(st.st_mode))}")
    st = os.stat(root)
    if stat.S_IMODE(st.st_mode) & 0o077:
        out.append(f"{root} {oct(stat.S_IMODE(st.st_mode))}")
    return out


def test_every_file_of_the_service_is_private(funcx_home, attacker, redis_client, quiet):
    root = funcx_home / "service"
    attacker.endpoint()  # a new ACL user: Redis rewrites users.acl
    redis_client.execute_command("ACL", "SAVE")  # and again, explicitly
    redis_client.bgrewriteaof()  # a new AOF, written by redis-server itself
    deadline = time.monotonic() + 30
    while redis_client.info("persistence")["aof_rewrite_in_progress"] or \
            redis_client.info("persistence")["aof_rewrite_scheduled"]:
        assert time.monotonic() < deadline, "AOF rewrite did not finish"
        time.sleep(0.05)  # a state we cannot subscribe to
    names = {p.name for p in root.rglob("*")}
    assert {"users.acl", "redis.conf", "secret", "redis.log"} <= names, names
    assert any(n.startswith("appendonly") for n in names), names
    assert [f for f in _loose(root) if not f.startswith(str(_supervisor_log(root)) + " ")] == []


def _supervisor_log(root):  # opened by backend/control.py, not the supervisor
    return root / "logs" / "supervisor.log"


def test_the_supervisor_log_is_private(funcx_home):
    log = _supervisor_log(funcx_home / "service")
    assert log.exists() and stat.S_IMODE(os.stat(log).st_mode) & 0o077 == 0


def test_embedded_redis_is_bounded_and_evicts_nothing(redis_client):
    from funcx.defaults import setting

    cfg = redis_client.config_get("maxmemory*")
    assert cfg["maxmemory-policy"] == "noeviction"
    want = str(setting("REDIS_MAXMEMORY")).lower()
    units = {"kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3, "k": 1000, "m": 1000 ** 2,
             "g": 1000 ** 3}
    unit = next((u for u in sorted(units, key=len, reverse=True) if want.endswith(u)), "")
    expected = int(float(want[:len(want) - len(unit)]) * units.get(unit, 1))
    assert int(cfg["maxmemory"]) == expected > 0


# ------------------------------------------------------------- re-enabled users
def test_reenabling_a_user_does_not_revive_old_credentials(service, redis_client, quiet):
    from backend import admin
    from backend.store import users

    rec = admin.add_user(redis_client, f"lazarus-{uuid.uuid4().hex[:8]}")
    old = rec["token"]
    client_id, secret = users.create_client(redis_client, rec["user_id"], "old-client")

    def whoami(tok: str) -> int:
        return requests.get(f"{service}/v2/whoami", headers={"Authorization": f"Bearer {tok}"},
                            timeout=30).status_code

    def exchange(cid: str, sec: str) -> int:
        return requests.post(f"{service}/v2/auth/token", timeout=30,
                             json={"client_id": cid, "client_secret": sec}).status_code

    assert whoami(old) == 200 and exchange(client_id, secret) == 200
    admin.set_disabled(redis_client, rec["user"])
    assert whoami(old) == 401 and exchange(client_id, secret) == 401
    during = admin.issue_token(redis_client, rec["user"])["token"]  # issued while disabled
    admin.set_disabled(redis_client, rec["user"], False)

    assert whoami(old) == 401  # issued before the disable: dead for good
    assert exchange(client_id, secret) == 401
    fresh = admin.issue_token(redis_client, rec["user"])["token"]
    assert whoami(fresh) == 200 and whoami(during) == 200
    new_client = users.create_client(redis_client, rec["user_id"], "new-client")
    assert exchange(*new_client) == 200
    me = requests.get(f"{service}/v2/whoami", headers={"Authorization": f"Bearer {fresh}"},
                      timeout=30).json()
    assert me["user_id"] == rec["user_id"]


def test_credentials_issued_before_a_disable_are_refused_by_the_store(redis_client):
    from backend.store import users

    uid = users.create_user(redis_client, f"store-{uuid.uuid4().hex[:8]}")
    before = users.issue_token(redis_client, uid)
    users.disable(redis_client, uid)
    users.enable(redis_client, uid)
    after = users.issue_token(redis_client, uid)
    assert users.authenticate(redis_client, before) is None
    assert users.authenticate(redis_client, after).user_id == uid
    assert users.issued_before_disable("5", None) is False
    assert users.issued_before_disable("5", "6") is True
    assert users.issued_before_disable("7", "6") is False
    assert users.issued_before_disable("garbage", "6") is True


# -------------------------------------------------------------------- names
BAD_NAMES = ["ep\n", "ep\r\n", "e\x00p", "tab\there", "bell\x07", "esc\x1b[31m", "del\x7f",
             "c1\x85", "   ", "x" * 257]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_names_with_control_characters_are_refused(attacker, bad, redis_client):
    before = redis_client.scard("fx:endpoints")
    for path, body, name in (
            ("/v3/endpoints", {"endpoint_name": bad}, "endpoint_name"),
            ("/v3/endpoints", {"endpoint_name": "fine", "display_name": bad}, "display_name"),
            ("/v3/functions", {"function_name": bad, "function_code": SER.serialize_function(double)},
             "function_name"),
            ("/v2/groups", {"name": bad}, "name")):
        resp = attacker.call("POST", path, json=body)
        assert resp.status_code == 400, (path, bad, resp.text)
        assert resp.json()["code"] == "BAD_REQUEST" and repr(name) in resp.json()["message"]
    assert redis_client.scard("fx:endpoints") == before


def test_ordinary_names_pass(attacker):
    info = attacker.endpoint(display_name="Ada's laptop — GPU (ü)")
    view = attacker.ok("GET", f"/v2/endpoints/{info['endpoint_id']}")
    assert view["display_name"] == "Ada's laptop — GPU (ü)"
    assert attacker.ok("POST", "/v2/groups", json={"name": "lab group"})["name"] == "lab group"
    attacker.ok("DELETE", f"/v2/endpoints/{info['endpoint_id']}")


# ------------------------------------------------------------------- limits
def test_endpoint_records_store_the_owners_limits(attacker, redis_client):
    info = attacker.endpoint(limits={"max_walltime": 60, "mem_per_worker": 2.5})
    eid = info["endpoint_id"]
    assert json.loads(redis_client.hget(f"fx:endpoint:{eid}", "limits")) == {
        "max_walltime": 60, "mem_per_worker": 2.5}
    assert attacker.ok("GET", f"/v3/endpoints/{eid}")["limits"] == {
        "max_walltime": 60, "mem_per_worker": 2.5}
    attacker.ok("PUT", f"/v3/endpoints/{eid}",
                json={"endpoint_name": "lp-limits", "limits": {"max_walltime": 5}})
    assert attacker.ok("GET", f"/v2/endpoints/{eid}")["limits"] == {"max_walltime": 5}
    attacker.ok("PUT", f"/v3/endpoints/{eid}", json={"endpoint_name": "lp-limits"})
    assert attacker.ok("GET", f"/v2/endpoints/{eid}")["limits"] == {}
    assert redis_client.hget(f"fx:endpoint:{eid}", "limits") == "{}"
    for bad, field in (({"max_walltime": -1}, "max_walltime"), ({"max_walltime": "abc"},
                       "max_walltime"), ({"mem_per_worker": 0}, "mem_per_worker"),
                       ({"walltime": 5}, "walltime"), ("60", "limits"), ([1], "limits")):
        resp = attacker.call("PUT", f"/v3/endpoints/{eid}",
                             json={"endpoint_name": "lp-limits", "limits": bad})
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["code"] == "BAD_REQUEST" and field in resp.json()["message"]
    assert redis_client.hget(f"fx:endpoint:{eid}", "limits") == "{}"  # nothing changed
    attacker.ok("DELETE", f"/v2/endpoints/{eid}")
