"""When an endpoint's agent was last seen (backend.store.endpoints.last_seen,
the ``since`` of an offline endpoint's problem in task details that other
users read): the agent is a tenant and writes ``heartbeat_t`` itself, so a
value that is not a finite number is treated as never seen, never passed on
as ``NaN``/``Infinity`` (which is not JSON).  Real Redis (the session service's)."""
from __future__ import annotations

import json
import uuid

import pytest

from backend.store.endpoints import last_seen
from funcx.protocol import keys


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e999", "not a time", ""])
def test_a_heartbeat_time_that_is_not_a_finite_number_reads_as_never_seen(redis_client, raw):
    eid = str(uuid.uuid4())
    redis_client.hset(keys.ep_seen(eid), "heartbeat_t", raw)
    try:
        seen = last_seen(redis_client, eid)
        assert seen is None
        json.dumps({"since": seen}, allow_nan=False)  # what the route answers stays JSON
    finally:
        redis_client.delete(keys.ep_seen(eid))


def test_a_finite_heartbeat_time_is_returned(redis_client):
    eid = str(uuid.uuid4())
    redis_client.hset(keys.ep_seen(eid), "heartbeat_t", "1700000000.5")
    try:
        assert last_seen(redis_client, eid) == 1700000000.5
    finally:
        redis_client.delete(keys.ep_seen(eid))
    assert last_seen(redis_client, eid) is None  # never seen
