"""funcX Executor docs: exceptions raised remotely come back through the future."""
import sys

from funcx import FuncXExecutor

tutorial_endpoint = sys.argv[1]


def div_by_zero(x):
    return x / 0


with FuncXExecutor(endpoint_id=tutorial_endpoint) as fxe:
    fut = fxe.submit(div_by_zero, 1)
    try:
        fut.result()
    except ZeroDivisionError as exc:
        print(f"caught {type(exc).__name__}: {exc}")
        print("\n".join(getattr(exc, "__notes__", [])))
