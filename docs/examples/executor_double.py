"""funcX Executor docs: the basic example."""
import sys

from funcx import FuncXExecutor

tutorial_endpoint = sys.argv[1]  # the only change from the docs: the endpoint id


def double(x):
    return x * 2


with FuncXExecutor(endpoint_id=tutorial_endpoint) as fxe:
    fut = fxe.submit(double, 7)
    print(fut.result())
