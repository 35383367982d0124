"""The environment a worker gives one task while it runs: ``FUNCX_TASK_ID``
(a ShellFunction's per-task directory is named after it) and what the manager
set for the task (``Task.env``: MPI mode's ``$PARSL_MPI_PREFIX``...), put
back as it was afterwards, so the next task on the worker never sees them."""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from funcx.protocol.messages import Task

#: the variable naming the running task (funcx.sdk.shell_function reads it)
TASK_ID_VAR = "FUNCX_TASK_ID"


def variables(task: Task) -> dict[str, str]:
    """What ``task`` runs with: its id and the manager's variables for it."""
    env = {str(k): str(v) for k, v in (task.env or {}).items()}
    env[TASK_ID_VAR] = task.task_id
    return env


@contextmanager
def applied(task: Task, environ: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """Run the body with ``variables(task)`` set in ``environ``, then restore it."""
    env = variables(task)
    saved: Mapping[str, str | None] = {k: environ.get(k) for k in env}
    environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                environ.pop(k, None)
            else:
                environ[k] = v
