"""funcX Executor docs: results in the order they arrive."""
import concurrent.futures
import sys

from funcx import FuncXExecutor

tutorial_endpoint = sys.argv[1]


def slow_square(x, delay):
    import time

    time.sleep(delay)
    return x * x


with FuncXExecutor(endpoint_id=tutorial_endpoint) as fxe:
    futures = [fxe.submit(slow_square, i, 0.6 if i == 0 else 0.0) for i in range(6)]
    for fut in concurrent.futures.as_completed(futures):
        print(fut.result())
