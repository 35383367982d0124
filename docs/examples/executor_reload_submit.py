"""funcX Executor docs, part 1 of reloading: submit tasks to a task group,
print the group id, then wait forever (the test kills this process)."""
import sys
import time

from funcx import FuncXExecutor

tutorial_endpoint = sys.argv[1]


def wait_and_return(x):
    import time

    time.sleep(1.5)
    return x + 100


fxe = FuncXExecutor(endpoint_id=tutorial_endpoint)
futures = [fxe.submit(wait_and_return, i) for i in range(4)]
for f in futures:  # all submitted: their ids are known
    f.submitted.wait()
print(fxe.task_group_id, flush=True)
time.sleep(3600)
