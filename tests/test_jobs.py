"""The RQ housekeeping job, on the service's real Redis."""
from __future__ import annotations

import uuid


def test_sweep_drops_expired_tasks_from_group_lists(redis_client):
    from backend.jobs import sweep_task_groups
    from funcx.protocol import keys

    tg = str(uuid.uuid4())
    alive, gone = str(uuid.uuid4()), str(uuid.uuid4())
    redis_client.hset(keys.task(alive), mapping={"task_id": alive, "status": "success"})
    redis_client.rpush(keys.task_group_tasks(tg), alive, gone)  # `gone` has no record: expired
    try:
        assert sweep_task_groups(redis_client) >= 1
        assert redis_client.lrange(keys.task_group_tasks(tg), 0, -1) == [alive]
    finally:
        redis_client.delete(keys.task(alive), keys.task_group_tasks(tg))


def test_the_sweep_is_scheduled(redis_client):
    """The RQ worker's start schedules the periodic sweep (RQ's own keys hold it)."""
    import threading

    from backend.jobs import SWEEP_JOB_ID

    tick = threading.Event()
    for _ in range(150):  # the worker schedules it when it starts; only polling can tell
        if redis_client.exists(f"rq:job:{SWEEP_JOB_ID}"):
            break
        tick.wait(0.1)
    assert redis_client.exists(f"rq:job:{SWEEP_JOB_ID}")
