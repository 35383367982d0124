"""403 and 404 do not reveal existence.

An attacker here is an ordinary second user probing for things that are not
theirs: another user's private container, and which user names exist (as the
owner of a group of their own, or as a member of someone else's).  Each test
proves the answers are the same as for things that do not exist *and* that
the session user's task on the session endpoint, submitted before the probe,
completes.
"""
from __future__ import annotations

import uuid

import pytest
import requests
from tenants import SER, Tenant, double, new_user, session_task


@pytest.fixture(scope="module")
def alice(service, redis_client) -> Tenant:
    return new_user(service, redis_client, "alice", timeout=30)


@pytest.fixture(scope="module")
def mallory(service, redis_client) -> Tenant:
    return new_user(service, redis_client, "mallory", timeout=30)


@pytest.fixture
def quiet(fxc, endpoint):
    """The session user's work, submitted before the probe; it must complete."""
    with session_task(fxc, endpoint, timeout=60) as tid:
        yield tid


def _same(a: requests.Response, b: requests.Response, a_id: str, b_id: str) -> None:
    """Two answers alike but for the id each names."""
    assert a.status_code == b.status_code, (a.text, b.text)
    ja, jb = a.json(), b.json()
    assert ja == {k: (v.replace(b_id, a_id) if isinstance(v, str) else v)
                  for k, v in jb.items()}, (ja, jb)


def _fn_body(container: str) -> dict:
    return {"function_name": "double", "container_uuid": container,
            "function_code": SER.serialize_function(double)}


# ---------------------------------------------------------------- containers
def test_a_private_container_is_404_to_others_on_read_and_at_registration(alice, mallory, quiet):
    private = alice.ok("POST", "/v2/containers", json={
        "type": "docker", "location": "registry.example/alice/secret:1"})["container_id"]
    public = alice.ok("POST", "/v2/containers", json={
        "type": "docker", "location": "docker.io/library/python:3.11",
        "public": True})["container_id"]
    ghost = str(uuid.uuid4())

    # the owner reads it and uses it
    assert alice.ok("GET", f"/v2/containers/{private}/docker")["container"]["location"] == \
        "registry.example/alice/secret:1"
    fid = alice.ok("POST", "/v3/functions", json=_fn_body(private))["function_uuid"]
    assert alice.ok("GET", f"/v2/functions/{fid}")["container_uuid"] == private

    # to anyone else it is exactly an id that does not exist
    got, none = (mallory.call("GET", f"/v2/containers/{c}/docker") for c in (private, ghost))
    assert got.status_code == 404 and got.json()["code"] == "CONTAINER_NOT_FOUND"
    assert "secret" not in got.text
    _same(got, none, private, ghost)
    for path in ("/v2/functions", "/v3/functions"):
        used, none = (mallory.call("POST", path, json=_fn_body(c)) for c in (private, ghost))
        assert used.status_code == 404
        _same(used, none, private, ghost)
    # the wrong type answers the same as well
    got, none = (mallory.call("GET", f"/v2/containers/{c}/singularity") for c in (private, ghost))
    _same(got, none, private, ghost)
    assert private not in {c["container_id"] for c in
                           mallory.ok("GET", "/v2/containers")["containers"]}

    # a public one is readable and usable by anyone
    seen = mallory.ok("GET", f"/v2/containers/{public}/docker")["container"]
    assert seen["public"] is True and "owner" not in seen
    assert mallory.ok("POST", "/v3/functions", json=_fn_body(public))["function_uuid"]


# -------------------------------------------------------------------- groups
def test_adding_an_unknown_user_answers_as_adding_an_existing_one(alice, mallory, quiet,
                                                                  redis_client):
    """A group owner cannot tell from the answer which user names exist."""
    gid = mallory.ok("POST", "/v2/groups", json={"name": "probe"})["group_id"]
    ghost = f"nobody-{uuid.uuid4().hex[:8]}"
    real = mallory.call("POST", f"/v2/groups/{gid}/members", json={"user": alice.user})
    fake = mallory.call("POST", f"/v2/groups/{gid}/members", json={"user": ghost})
    _same(real, fake, alice.user, ghost)
    assert real.status_code == 200 and alice.uid not in real.text
    # by id too: a made-up id answers as a real one
    real = mallory.call("POST", f"/v2/groups/{gid}/members", json={"user": alice.uid})
    made_up = str(uuid.uuid4())
    fake = mallory.call("POST", f"/v2/groups/{gid}/members", json={"user": made_up})
    _same(real, fake, alice.uid, made_up)
    # the real user was added, the unknown name created nothing
    assert redis_client.sismember(f"fx:group:{gid}:members", alice.uid)
    assert not redis_client.hexists("fx:users", ghost)
    assert not redis_client.exists(f"fx:user:{made_up}")

    # removing: alike for the owner...
    real = mallory.call("DELETE", f"/v2/groups/{gid}/members/{alice.user}")
    fake = mallory.call("DELETE", f"/v2/groups/{gid}/members/{ghost}")
    _same(real, fake, alice.user, ghost)
    assert real.status_code == 200


def test_a_member_cannot_probe_user_names_by_removing_them(alice, mallory, service, token,
                                                           quiet):
    """A member (not owner) removing someone else gets 403, existing or not."""
    owner = Tenant(service, token, timeout=30)
    gid = owner.ok("POST", "/v2/groups", json={"name": "probed"})["group_id"]
    owner.ok("POST", f"/v2/groups/{gid}/members", json={"user": mallory.user})
    ghost = f"nobody-{uuid.uuid4().hex[:8]}"
    real = mallory.call("DELETE", f"/v2/groups/{gid}/members/{alice.user}")
    fake = mallory.call("DELETE", f"/v2/groups/{gid}/members/{ghost}")
    assert real.status_code == 403
    _same(real, fake, alice.user, ghost)
    # and a non-member learns nothing about the group either
    gone = alice.call("POST", f"/v2/groups/{gid}/members", json={"user": ghost})
    none = alice.call("POST", f"/v2/groups/{uuid.uuid4()}/members", json={"user": ghost})
    assert gone.status_code == none.status_code == 404
    assert gone.json()["code"] == none.json()["code"] == "GROUP_NOT_FOUND"
