"""Drive the public globus-compute-sdk 4.19.0 ``Client`` against our service.

Run with the interpreter of a virtualenv that has ``globus-compute-sdk==4.19.0``
installed (tests/test_public_sdks.py does that), never with the project's own:

    python gc_client.py SERVICE_URL ENDPOINT_ID     (token in $COMPAT_TOKEN)

Every step is recorded, errors included, and the script prints one JSON line
(the last line of stdout) for the test to check.  The functions below live in
``__main__``, so the SDK serializes them by value with its own dill.
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


def main() -> int:
    url, endpoint = sys.argv[1], sys.argv[2]
    token = os.environ["COMPAT_TOKEN"]
    timeout = float(os.environ.get("COMPAT_TIMEOUT", "120"))

    import dill
    import globus_compute_sdk
    import globus_sdk
    from globus_compute_sdk import Client
    from globus_compute_sdk.errors import TaskExecutionFailed, TaskPending
    from globus_compute_sdk.sdk.client import _ComputeWebClient

    out = {"sdk": "globus-compute-sdk", "sdk_version": globus_compute_sdk.__version__,
           "globus_sdk_version": globus_sdk.__version__, "client_dill": dill.__version__,
           "client_python": ".".join(map(str, sys.version_info[:3])),
           "sdk_module": globus_compute_sdk.__file__}

    step = recorder(out)

    wait_result = waiter(lambda tid: gcc.get_result(tid), TaskPending, timeout)

    auth = globus_sdk.AccessTokenAuthorizer(token)
    gcc = Client(authorizer=auth, do_version_check=False)
    gcc.web_service_address = url
    gcc._compute_web_client = _ComputeWebClient(base_url=url, authorizer=auth)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def version_check():
            gcc.version_check()  # raises VersionMismatch / KeyError / API errors
            return "ok"

        step("version_check", version_check)
        step("endpoint_status", lambda: gcc.get_endpoint_status(endpoint).get("status"))

        fids = {}

        def register():
            for fn in (add, echo, square, runtime, boom):
                fids[fn.__name__] = gcc.register_function(fn)
            return {k: str(uuid.UUID(v)) == v for k, v in fids.items()}

        step("register", register)

        def run_add():
            tid = gcc.run(3, 4, endpoint_id=endpoint, function_id=fids["add"], scale=10, offset=2)
            return wait_result(tid)

        step("run_add", run_add)

        def run_echo():
            tid = gcc.run(1, "two", [3.0], endpoint_id=endpoint, function_id=fids["echo"],
                          key="value", nested={"n": [1, 2]})
            return wait_result(tid)

        step("run_echo", run_echo)

        def run_runtime():
            tid = gcc.run(endpoint_id=endpoint, function_id=fids["runtime"])
            return wait_result(tid)

        step("remote_runtime", run_runtime)

        def run_source_code():
            # sent as raw source text with "serialized": false, not a packed buffer
            source = "import math\n\ndef hyp(a, b=0):\n    return math.hypot(a, b)\n"
            fid = gcc.register_source_code(source, "hyp")
            return wait_result(gcc.run(3, endpoint_id=endpoint, function_id=fid, b=4))

        step("run_source_code", run_source_code)

        def run_boom():
            tid = gcc.run("gc419", endpoint_id=endpoint, function_id=fids["boom"])
            try:
                value = wait_result(tid)
            except TaskExecutionFailed as e:
                return {"raised": f"{type(e).__module__}.{type(e).__name__}",
                        "remote_data": e.remote_data, "str": str(e),
                        "completion_t": e.completion_t}
            return {"raised": None, "value": repr(value)}

        step("failure", run_boom)

        def batch():
            b = gcc.create_batch()
            for i in range(5):
                b.add(fids["square"], args=(i,))
            b.add(fids["add"], args=(1, 2), kwargs={"offset": 100})
            r = gcc.batch_run(endpoint, b)
            sq_tids, add_tids = r["tasks"][fids["square"]], r["tasks"][fids["add"]]
            for key in ("request_id", "task_group_id", "endpoint_id"):
                uuid.UUID(r[key])  # the Executor parses these: they must be UUIDs
            tids = sq_tids + add_tids
            deadline = time.monotonic() + timeout
            while True:
                res = gcc.get_batch_result(tids)
                if all(t in res and not res[t]["pending"] for t in tids):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"batch still pending after {timeout}s: {res}")
                time.sleep(0.2)
            return {"endpoint_id": r["endpoint_id"], "task_group_id": r["task_group_id"],
                    "n_tasks": {"square": len(sq_tids), "add": len(add_tids)},
                    "statuses": sorted({res[t]["status"] for t in tids}),
                    "completion_t_set": all(res[t].get("completion_t") for t in tids),
                    "square": [res[t]["result"] for t in sq_tids],
                    "add": [res[t]["result"] for t in add_tids]}

        step("batch", batch)

        def result_serializers():
            # issue 18: results as JSON, named by the SDK's own import path
            b = gcc.create_batch(result_serializers=["globus_compute_sdk.serialize.JSONData"])
            b.add(fids["echo"], args=(1, "two"), kwargs={"k": [3]})
            tid = gcc.batch_run(endpoint, b)["tasks"][fids["echo"]][0]
            return {"task_id": tid, "value": wait_result(tid)}

        step("result_serializers", result_serializers)

        def all_code_strategies():
            # issue 18: the function sent as AllCodeStrategies (source and dill)
            from globus_compute_sdk.serialize import AllCodeStrategies

            c2 = Client(authorizer=auth, do_version_check=False,
                        code_serialization_strategy=AllCodeStrategies())
            c2.web_service_address = url
            c2._compute_web_client = _ComputeWebClient(base_url=url, authorizer=auth)
            fid = c2.register_function(square)
            return wait_result(c2.run(9, endpoint_id=endpoint, function_id=fid))

        step("all_code_strategies", all_code_strategies)

    out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    print(json.dumps(out, default=repr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
