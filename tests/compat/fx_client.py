"""Drive the public funcx 1.0.13 ``FuncXClient`` against our service.

Run with the interpreter of a virtualenv that has ``funcx==1.0.13`` installed
(tests/test_public_sdks.py does that), never with the project's own (whose
package is also called ``funcx``):

    python fx_client.py SERVICE_URL ENDPOINT_ID     (token in $COMPAT_TOKEN)

Every step is recorded, errors included, and the script prints one JSON line
(the last line of stdout) for the test to check.  The functions below live in
``__main__``; funcx 1.0.13 sends them as source (strategy 04) with its own dill.
"""
import json
import os
import sys
import time
import uuid
import warnings

from common import recorder, waiter  # a sibling module: tests/compat/common.py


def add(a, b, *, scale=1, offset=0):
    print("adding", a, b)  # the documents this SDK parses carry stdout (issue 16)
    return a * scale + b + offset


def echo(*args, **kwargs):
    return {"args": args, "kwargs": kwargs, "args_type": type(args).__name__}


def square(x):
    return x * x


def runtime():
    import sys as _sys

    import dill as _dill

    return {"python": ".".join(map(str, _sys.version_info[:3])), "dill": _dill.__version__,
            "executable": _sys.executable}


def boom(tag):
    import sys as _sys

    print("about to fail", tag)  # a failed task's document carries stdout and stderr too
    _sys.stderr.write(f"warning {tag}\n")
    raise ValueError(f"compat-boom {tag}")


class StaticTokenLoginManager:
    """The ``LoginManagerProtocol`` of funcx 1.0.13 with one fixed bearer token."""

    def __init__(self, token):
        import globus_sdk

        self._authz = globus_sdk.AccessTokenAuthorizer(token)

    def ensure_logged_in(self):
        pass

    def logout(self):
        return False

    def get_auth_client(self):
        import globus_sdk

        return globus_sdk.AuthClient(authorizer=self._authz)

    def get_funcx_web_client(self, *, base_url=None, app_name=None):
        from funcx.sdk.web_client import FuncxWebClient

        return FuncxWebClient(base_url=base_url, app_name=app_name, authorizer=self._authz)

    def run_login_flow(self, **kwargs):
        raise RuntimeError("static token only: no login flow")


def main() -> int:
    url, endpoint = sys.argv[1], sys.argv[2]
    token = os.environ["COMPAT_TOKEN"]
    timeout = float(os.environ.get("COMPAT_TIMEOUT", "120"))

    import dill
    import globus_sdk

    import funcx
    from funcx import FuncXClient
    from funcx.errors import FuncxTaskExecutionFailed, TaskPending

    out = {"sdk": "funcx", "sdk_version": funcx.__version__,
           "globus_sdk_version": globus_sdk.__version__, "client_dill": dill.__version__,
           "client_python": ".".join(map(str, sys.version_info[:3])),
           "sdk_module": funcx.__file__}

    step = recorder(out)

    wait_result = waiter(lambda tid: fxc.get_result(tid), TaskPending, timeout)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        holder = {}

        def construct():
            # do_version_check=True (the default): GET /v2/version?service=all
            holder["fxc"] = FuncXClient(funcx_service_address=url.rstrip("/") + "/v2",
                                        login_manager=StaticTokenLoginManager(token))
            return "ok"

        step("version_check", construct)
        if "fxc" not in holder:
            out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
            print(json.dumps(out, default=repr))
            return 0
        fxc = holder["fxc"]

        step("endpoint_status", lambda: fxc.get_endpoint_status(endpoint).get("status"))

        fids = {}

        def register():
            for fn in (add, echo, square, runtime, boom):
                fids[fn.__name__] = fxc.register_function(fn)
            return {k: str(uuid.UUID(v)) == v for k, v in fids.items()}

        step("register", register)

        def run_add():
            tid = fxc.run(3, 4, endpoint_id=endpoint, function_id=fids["add"], scale=10, offset=2)
            return wait_result(tid)

        step("run_add", run_add)

        def run_echo():
            tid = fxc.run(1, "two", [3.0], endpoint_id=endpoint, function_id=fids["echo"],
                          key="value", nested={"n": [1, 2]})
            return wait_result(tid)

        step("run_echo", run_echo)

        def run_runtime():
            tid = fxc.run(endpoint_id=endpoint, function_id=fids["runtime"])
            return wait_result(tid)

        step("remote_runtime", run_runtime)

        def run_boom():
            tid = fxc.run("fx1013", endpoint_id=endpoint, function_id=fids["boom"])
            try:
                value = wait_result(tid)
            except FuncxTaskExecutionFailed as e:
                return {"raised": f"{type(e).__module__}.{type(e).__name__}",
                        "remote_data": e.remote_data, "str": str(e),
                        "completion_t": e.completion_t}
            return {"raised": None, "value": repr(value)}

        step("failure", run_boom)

        def batch():
            b = fxc.create_batch()
            for i in range(5):
                b.add(fids["square"], endpoint, args=(i,))
            b.add(fids["add"], endpoint, args=(1, 2), kwargs={"offset": 100})
            tids = fxc.batch_run(b)
            if len(tids) != 6:
                raise AssertionError(f"batch_run returned {len(tids)} task ids: {tids}")
            for t in tids:
                uuid.UUID(t)
            deadline = time.monotonic() + timeout
            while True:
                res = fxc.get_batch_result(tids)
                if all(t in res and not res[t]["pending"] for t in tids):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"batch still pending after {timeout}s: {res}")
                time.sleep(0.2)
            return {"n_tasks": len(tids),
                    "statuses": sorted({res[t]["status"] for t in tids}),
                    "completion_t_set": all(res[t].get("completion_t") for t in tids),
                    "square": [res[t]["result"] for t in tids[:5]],
                    "add": [res[t]["result"] for t in tids[5:]]}

        step("batch", batch)

    out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    print(json.dumps(out, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
