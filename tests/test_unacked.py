"""A manager's results kept until the interchange acknowledges them
(endpoint/unacked.py): numbered in send order, forgotten as the count in a
heartbeat covers them, found by task id, bounded."""
from __future__ import annotations

from endpoint.unacked import Unacked
from funcx.protocol.messages import Result


def res(tid: str, data: str = "") -> Result:
    return Result(tid, "success", data=data or f"v-{tid}")


def test_kept_in_send_order_and_forgotten_as_acknowledged():
    u = Unacked()
    for n, tid in enumerate(["a", "b", "c"], start=1):
        assert u.add(n, res(tid)) == 0
    assert [(n, r.task_id) for n, r in u] == [(1, "a"), (2, "b"), (3, "c")]
    u.acknowledged(2)
    assert [r.task_id for _, r in u] == ["c"] and "a" not in u and len(u) == 1
    u.acknowledged(1)  # an older count changes nothing
    assert [r.task_id for _, r in u] == ["c"]
    u.acknowledged(3)
    assert not u and list(u) == []


def test_found_by_task_id_and_a_newer_result_replaces_the_older():
    u = Unacked()
    u.add(1, res("a", "first"))
    u.add(2, res("b"))
    assert u.get("a").data == "first" and u.get("zz") is None
    u.add(3, res("a", "rerun"))  # a re-run's result: the newest stands, last in order
    assert [(n, r.task_id) for n, r in u] == [(2, "b"), (3, "a")]
    assert u.get("a").data == "rerun"
    u.acknowledged(2)
    assert u.get("a").data == "rerun" and u.get("b") is None


def test_bounded_oldest_let_go():
    u = Unacked(limit=3)
    assert [u.add(n, res(f"t{n}")) for n in range(1, 6)] == [0, 0, 0, 1, 1]
    assert [r.task_id for _, r in u] == ["t3", "t4", "t5"]
    u.clear()
    assert len(u) == 0
