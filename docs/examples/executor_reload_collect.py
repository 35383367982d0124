"""funcX Executor docs, part 2 of reloading: a new process rebuilds the futures
of the task group and collects every result."""
import sys

from funcx import FuncXExecutor

tutorial_endpoint, task_group_id = sys.argv[1], sys.argv[2]

with FuncXExecutor(endpoint_id=tutorial_endpoint, task_group_id=task_group_id) as fxe:
    futures = fxe.reload_tasks()
    print(sorted(f.result() for f in futures))
