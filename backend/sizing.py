"""How many web workers and ingesters one service host runs, from its cores.

Per no-op task the web workers spend about twice the CPU an ingester does
(submit and result fetch, about 13 µs, against the apply path, about 6 µs;
measured with benchmarks/service_cpu.py, README "Sizing a service host"), and the
site's one Redis needs a core of its own as the load grows.  So a host gives
half its cores to web workers, a quarter to ingesters and leaves the rest to
Redis, the RQ worker and the system:

* ``WEB_WORKERS`` = max(2, cores // 2) — two at least, so one slow request
  never holds the whole service;
* ``INGESTERS`` = max(1, cores // 4).

On 2 cores that is 2 web workers and 1 ingester (as before); on 16, 8 and 4.
A positive ``FUNCX_WEB_WORKERS`` / ``FUNCX_INGESTERS`` is used as given.
"""
from __future__ import annotations

import os

from funcx.defaults import setting


def cores() -> int:
    """The cores this process may run on (its affinity mask, e.g. a container's
    cpuset), else every core of the host."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_web_workers(n_cores: int) -> int:
    """Web worker processes for a host of ``n_cores`` cores."""
    return max(2, n_cores // 2)


def default_ingesters(n_cores: int) -> int:
    """Ingester processes for a host of ``n_cores`` cores."""
    return max(1, n_cores // 4)


def web_workers() -> int:
    """``WEB_WORKERS`` if positive, else sized to this host's cores."""
    n = int(setting("WEB_WORKERS"))
    return n if n > 0 else default_web_workers(cores())


def ingesters() -> int:
    """``INGESTERS`` if positive, else sized to this host's cores."""
    n = int(setting("INGESTERS"))
    return n if n > 0 else default_ingesters(cores())


def ingester_name(i: int) -> str:
    """The supervisor's name (and log file stem) of its ``i``-th ingester:
    ``ingester``, then ``ingester-1``, ``ingester-2``..."""
    return "ingester" if i == 0 else f"ingester-{i}"
