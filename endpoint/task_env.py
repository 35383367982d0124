"""The environment a worker gives one task while it runs: ``FUNCX_TASK_ID``,
``FUNCX_TASK_SANDBOX_DIR`` (``<the worker's directory>/<task id>``, where a
ShellFunction runs; not created here) and what the manager set for the task
(``Task.env``: MPI mode's ``$PARSL_MPI_PREFIX``...), put back as they were
afterwards, so the next task on the worker never sees them."""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager

from funcx.protocol.messages import Task

#: the variable naming the running task (funcx.sdk.shell_function reads it)
TASK_ID_VAR = "FUNCX_TASK_ID"
#: the task's own directory (funcx.sdk.shell_function creates it and runs there)
SANDBOX_VAR = "FUNCX_TASK_SANDBOX_DIR"


def variables(task: Task, base: str | None = None) -> dict[str, str]:
    """What ``task`` runs with: its id, its directory under ``base`` (the
    worker's own directory) and the manager's variables for it."""
    env = {str(k): str(v) for k, v in (task.env or {}).items()}
    env[TASK_ID_VAR] = task.task_id
    if base and task.task_id and os.sep not in task.task_id and task.task_id not in (".", ".."):
        env[SANDBOX_VAR] = os.path.join(base, task.task_id)
    return env


@contextmanager
def applied(task: Task, environ: MutableMapping[str, str] = os.environ,
            base: str | None = None) -> Iterator[None]:
    """Run the body with ``variables(task, base)`` set in ``environ``, then restore it."""
    env = variables(task, base)
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
