"""What both public-SDK client scripts share (they run in their own venvs and
import this as a sibling module)."""
import time
import traceback


def recorder(out: dict):
    """``step(name, fn)``: store ``fn()`` in ``out[name]``, or the error it raised."""

    def step(name, fn):
        try:
            out[name] = fn()
        except BaseException as e:  # noqa: BLE001 - recorded for the test to report
            out[name] = {"error": f"{type(e).__module__}.{type(e).__name__}: {e}",
                         "traceback": traceback.format_exc()}

    return step


def waiter(get_result, pending_error: type, timeout: float):
    """``wait_result(tid)``: poll the public SDK's own get_result until done."""

    def wait_result(tid):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return get_result(tid)
            except pending_error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"task {tid} still pending after {timeout}s") from None
                time.sleep(0.2)  # the public SDK offers no push: polling is its own API

    return wait_result
