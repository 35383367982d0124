"""The pure block-health core (endpoint.block_health): failures become
problems and push the next submission back exponentially; a registration
clears them."""
from __future__ import annotations

from endpoint.block_health import (
    ADDRESS,
    NEVER_REGISTERED,
    SUBMIT_FAILED,
    BlockHealth,
    register_timeout_for,
    scrub,
)


def health(timeout: float = 60.0) -> BlockHealth:
    return BlockHealth(register_timeout=timeout, backoff_min=5.0, backoff_max=300.0)


def test_submit_failures_back_off_exponentially_up_to_the_cap():
    h = health()
    delays = [h.submit_failed("sbatch: not found", now=0.0, wall=100.0) for _ in range(9)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert not h.may_submit(299.0) and h.may_submit(300.0)
    [p] = h.problems()  # one row per kind, its first time kept
    assert p == {"kind": SUBMIT_FAILED, "message": "block submission failed: sbatch: not found",
                 "block": None, "since": 100.0}


def test_a_submission_that_works_clears_the_submit_problem_but_not_the_backoff():
    h = health()
    h.submit_failed("boom", 0.0, 1.0)
    h.submitted("0", 10.0)
    assert h.problems() == []
    assert h.failures == 1  # only a manager registering proves the blocks work


def test_a_block_that_runs_without_registering_is_overdue_once():
    h = health(timeout=60)
    h.submitted("0", now=0.0)
    assert h.overdue(1000.0, 1.0) == []  # queued in the scheduler: the clock has not started
    h.running("0", now=100.0)
    h.running("0", now=150.0)  # the first time it was seen running counts
    assert h.overdue(159.0, 1.0) == []
    assert h.overdue(160.0, 2.0) == ["0"]
    assert h.overdue(500.0, 3.0) == []  # reported once
    [p] = h.problems()
    assert p["kind"] == NEVER_REGISTERED and p["block"] == "0" and "60s" in p["message"]
    assert not h.may_submit(164.0) and h.may_submit(165.0)


def test_a_block_that_ends_before_registering_is_a_failure():
    h = health()
    h.submitted("0", 0.0)
    h.submitted("1", 0.0)
    h.registered({"1"})
    assert h.ended(["0", "1"], now=3.0, wall=7.0) == ["0"]
    [p] = h.problems()
    assert p["block"] == "0" and "ended before its manager registered" in p["message"]


def test_repeated_never_registered_blocks_keep_one_row_and_the_first_time():
    h = health()
    for i in range(3):
        h.submitted(str(i), float(i * 100))
        h.ended([str(i)], now=float(i * 100 + 1), wall=float(1000 + i))
    [p] = h.problems()
    assert p["block"] == "2" and p["since"] == 1000.0
    assert h.backoff() == 20.0


def test_a_registration_clears_failures_and_backoff():
    h = health()
    h.submitted("0", 0.0)
    h.ended(["0"], 1.0, 1.0)
    h.submitted("1", 10.0)
    h.registered({"1"})
    assert h.problems() == [] and h.failures == 0 and h.may_submit(10.0)
    h.registered({"1"})  # again (every round): nothing changes
    assert h.failures == 0


def test_a_registration_of_an_old_block_does_not_clear_new_failures():
    h = health()
    h.submitted("0", 0.0)
    h.registered({"0"})
    h.submitted("1", 1.0)
    h.ended(["1"], 2.0, 2.0)
    h.registered({"0"})  # block 0's manager is still there: no news
    assert h.failures == 1 and len(h.problems()) == 1


def test_cancelled_blocks_are_not_awaited():
    h = health(timeout=1)
    h.submitted("0", 0.0)
    h.running("0", 0.0)
    h.cancelled(["0"])
    assert h.overdue(100.0, 1.0) == [] and h.ended(["0"], 100.0, 1.0) == []
    assert h.problems() == [] and h.failures == 0


def test_standing_problems_stay_and_sort_by_time():
    h = health()
    h.submit_failed("late", 0.0, 50.0)
    h.report(ADDRESS, "loopback with a remote provider", 10.0)
    h.registered({"x"})
    assert [p["kind"] for p in h.problems()] == [ADDRESS, SUBMIT_FAILED]


def test_scrub_bounds_and_masks_credentials():
    text = scrub("failed: redis://agent:s3cr3t@host:6379/0 password=hunter2 token: abc " + "x" * 900)
    assert "s3cr3t" not in text and "hunter2" not in text and "abc" not in text
    assert len(text) <= 500 and text.endswith("…")
    assert scrub("line1\n  line2") == "line1 line2"


def test_register_timeout_per_provider():
    assert register_timeout_for(None, local=True, default=300) == 60
    assert register_timeout_for(None, local=False, default=300) == 300
    assert register_timeout_for(7, local=True, default=300) == 7


def test_block_ids_go_on_across_daemon_starts(tmp_path):
    """A successor daemon's blocks never reuse a predecessor's ids (whose
    batch jobs' managers may reconnect to it)."""
    from endpoint.blocks import Blocks
    from endpoint.config import Config

    class Provider:  # a batch scheduler that accepts every job
        script_dir = None
        min_blocks, max_blocks, init_blocks = 0, 4, 0

        def __init__(self):
            self.names = []

        def submit(self, command, tasks_per_node, job_name=""):
            self.names.append(job_name)
            return f"job-{len(self.names)}"

    keys = tmp_path / "manager.key_secret"
    first = Blocks(Config(provider=Provider()), "tcp://10.0.0.1:5", tmp_path, keys)
    assert first.scale_out(2) == ["0", "1"]
    second = Blocks(Config(provider=Provider()), "tcp://10.0.0.1:5", tmp_path, keys)
    assert second.scale_out(1) == ["2"]
    assert second.provider.names == ["funcx-block-2"]
