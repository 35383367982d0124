"""Background jobs run by RQ workers: periodic housekeeping of task groups.

Task records expire on their own (Redis TTL); the sweep removes the ids of
expired tasks from task-group lists so groups do not grow without bound.
Run a worker with ``python -m backend.jobs`` (the supervisor does).
"""
from __future__ import annotations

import logging
from datetime import timedelta

import redis
from rq import Queue, Worker

from backend.redis_conn import connect, raw_twin
from backend.store.tasks import drop_expired_from_groups
from funcx.defaults import setting

QUEUE = "funcx"
SWEEP_JOB_ID = "funcx-sweep"
log = logging.getLogger("funcx.jobs")


def sweep_task_groups(r: redis.Redis | None = None) -> int:
    """Drop expired task ids from task-group lists; return how many were dropped."""
    return drop_expired_from_groups(r or connect())


def periodic_sweep() -> int:
    """The sweep, rescheduling itself every ``FUNCX_SWEEP_PERIOD_S``."""
    r = connect()
    try:
        return sweep_task_groups(r)
    finally:
        schedule_sweep(r)


def schedule_sweep(r: redis.Redis) -> None:
    q = Queue(QUEUE, connection=_rq_conn(r))
    # by dotted name: the worker runs this module as __main__
    q.enqueue_in(timedelta(seconds=int(setting("SWEEP_PERIOD_S"))), "backend.jobs.periodic_sweep",
                 job_id=SWEEP_JOB_ID)


def _rq_conn(r: redis.Redis) -> redis.Redis:
    """RQ stores pickled bytes: it needs a client without response decoding."""
    return raw_twin(r)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    conn = _rq_conn(connect())
    schedule_sweep(connect())
    Worker([Queue(QUEUE, connection=conn)], connection=conn).work(with_scheduler=True)


if __name__ == "__main__":
    main()
