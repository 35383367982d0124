"""The aggregate figure's client processes against the live service and
endpoint: spawned clients, each with its own FuncXClient and executor, start
each round together on a barrier and every result arrives; a client that
cannot run fails the figure with its reason instead of hanging it."""
from __future__ import annotations

import uuid

import pytest

from benchmarks import aggregate as agg


def test_every_client_runs_each_round_after_the_last_one_ended(endpoint):
    rounds = agg.run_clients([endpoint, endpoint], tasks=300, rounds=2)
    assert len(rounds) == 2
    for spans in rounds:  # each client checked its 300 results itself (run_tasks)
        assert sorted(s.client for s in spans) == [0, 1]
        assert all(s.end > s.start for s in spans)
    # the barrier: no client starts round 2 before every client ended round 1
    assert min(s.start for s in rounds[1]) >= max(s.end for s in rounds[0])
    assert agg.aggregate_rate(rounds[0], 300) > 0


def test_a_client_that_cannot_run_fails_the_figure_with_its_reason(endpoint):
    unknown = str(uuid.uuid4())  # no such endpoint: the client's warm-up fails
    with pytest.raises(RuntimeError) as exc:
        agg.run_clients([endpoint, unknown], tasks=50, rounds=1)
    msg = str(exc.value)
    assert f"client 1: NotFound: 404 ENDPOINT_NOT_FOUND: endpoint {unknown} not found" in msg, msg
