"""What a worker process may see of its manager's environment: nothing of
the owner's funcX settings or credentials, only the few variables a worker
itself reads."""
from __future__ import annotations

from collections.abc import Mapping

#: the only FUNCX_* variables a worker gets (what the worker itself reads)
WORKER_FUNCX_VARS = frozenset({"FUNCX_MANAGER_PID", "FUNCX_WORKER_MEMORY_GB",
                               "FUNCX_CONTAINER_ID", "FUNCX_MAX_RESULT_BYTES",
                               "FUNCX_TASK_OUTPUT_MAX", "FUNCX_TASK_OUTPUT_PREFIX",
                               "FUNCX_WORKER_CPUS"})
#: prefixes of variables that may carry the owner's settings or credentials
SCRUBBED_PREFIXES = ("FUNCX_", "GLOBUS_COMPUTE_", "GLOBUS_SDK_", "ZMQ_CURVE")


def worker_environment(base: Mapping[str, str], extra: Mapping[str, str] = {}) -> dict[str, str]:
    """``base`` without the owner's funcX settings and secrets, plus ``extra``."""
    env = {k: v for k, v in base.items()
           if not k.upper().startswith(SCRUBBED_PREFIXES) or k in WORKER_FUNCX_VARS}
    env.update(extra)
    return env
