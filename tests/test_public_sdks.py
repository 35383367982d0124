"""The public SDKs, unchanged, against our service and a real endpoint.

globus-compute-sdk 4.19.0 and funcx 1.0.13 are not project dependencies: each
is installed once into a throw-away virtualenv under ``.venv-compat/`` (kept
between runs) and drives our service from a subprocess running the scripts in
``tests/compat/``.  Those scripts register functions of their own
``__main__`` (serialized by the SDK's own dill), run them with args and kwargs,
run a batch, provoke a remote failure, and print one JSON line that the tests
below check.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
COMPAT = Path(__file__).resolve().parent / "compat"
VENVS = ROOT / ".venv-compat"

# name -> (requirement, distribution, client script, the SDK's failure exception)
SDKS = {
    "gc419": ("globus-compute-sdk==4.19.0", "globus-compute-sdk", "gc_client.py",
              "TaskExecutionFailed"),
    "fx1013": ("funcx==1.0.13", "funcx", "fx_client.py", "FuncxTaskExecutionFailed"),
}
# pip output that means the index (or the pinned release) cannot be reached
_UNREACHABLE = ("No matching distribution found", "Could not find a version",
                "NewConnectionError", "Failed to establish a new connection",
                "Temporary failure in name resolution", "Network is unreachable",
                "ConnectTimeoutError", "ReadTimeoutError", "ProxyError", "SSLError",
                "Max retries exceeded")


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _installed_version(python: Path, dist: str) -> str | None:
    try:
        r = subprocess.run([str(python), "-c",
                            f"import importlib.metadata as m; print(m.version({dist!r}))"],
                           capture_output=True, text=True, timeout=60, env=_clean_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment for the SDK processes: nothing of the project's own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FUNCX_", "GLOBUS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def ensure_venv(name: str) -> Path:
    """Python of ``.venv-compat/<name>`` with the SDK installed (created once, then reused)."""
    requirement, dist, _, _ = SDKS[name]
    wanted = requirement.split("==")[1]
    venv = VENVS / name
    python = _venv_python(venv)
    VENVS.mkdir(exist_ok=True)
    with open(VENVS / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent sessions build it once
        if python.exists() and _installed_version(python, dist) == wanted:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        r = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                            "--timeout", "30", "--retries", "2", requirement],
                           capture_output=True, text=True, timeout=900, env=_clean_env())
        if r.returncode != 0:
            output = r.stdout + r.stderr
            shutil.rmtree(venv, ignore_errors=True)
            tail = "\n".join(output.strip().splitlines()[-15:])
            if any(s in output for s in _UNREACHABLE):
                errors = [ln for ln in output.splitlines() if ln.startswith("ERROR")][-2:]
                pytest.skip(f"pip cannot install {requirement} (package index unreachable?): "
                            + " / ".join(errors or tail.splitlines()[-2:]))
            pytest.fail(f"pip install {requirement} failed:\n{tail}")
        got = _installed_version(python, dist)
        assert got == wanted, f"{dist} {got} installed, expected {wanted}"
        return python


def run_client(name: str, service: str, endpoint: str, token: str, workdir: Path) -> dict:
    python = ensure_venv(name)
    script = COMPAT / SDKS[name][2]
    home = workdir / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = _clean_env(COMPAT_TOKEN=token, COMPAT_TIMEOUT="120", HOME=str(home))
    try:
        r = subprocess.run([str(python), str(script), service, endpoint], cwd=workdir, env=env,
                           capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{script.name} timed out; stderr:\n{(e.stderr or '')[-4000:]}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        pytest.fail(f"{script.name} exited {r.returncode}\nstdout:\n{r.stdout[-4000:]}\n"
                    f"stderr:\n{r.stderr[-4000:]}")
    report = json.loads(lines[-1])
    report["_stderr"] = r.stderr
    return report


@pytest.fixture(scope="module", params=sorted(SDKS), ids=lambda n: n)
def report(request, service, endpoint, token, tmp_path_factory):
    """What one public SDK's client script saw, run once per SDK."""
    name = request.param
    return name, run_client(name, service, endpoint, token, tmp_path_factory.mktemp(name))


def step(rep: tuple[str, dict], key: str):
    name, data = rep
    assert key in data, f"{name}: no {key!r} in the report: {sorted(data)}"
    value = data[key]
    if isinstance(value, dict) and set(value) == {"error", "traceback"}:
        pytest.fail(f"{name}: step {key!r} failed: {value['error']}\n{value['traceback']}\n"
                    f"client stderr:\n{data['_stderr'][-3000:]}")
    return value


def test_the_real_public_sdk_is_used(report):
    name, data = report
    wanted = SDKS[name][0].split("==")[1]
    assert data["sdk_version"] == wanted
    assert str(VENVS / name) in data["sdk_module"], data["sdk_module"]


def test_version_check_passes(report):
    # 4.19: Client.version_check() called explicitly; funcx 1.0.13: the
    # constructor's own version check (do_version_check=True).
    assert step(report, "version_check") == "ok"


def test_endpoint_is_online(report):
    assert step(report, "endpoint_status") == "online"


def test_register_function(report):
    assert step(report, "register") == {f: True for f in ("add", "echo", "square", "runtime",
                                                          "boom")}


def test_run_with_args_and_kwargs(report):
    assert step(report, "run_add") == 3 * 10 + 4 + 2
    assert step(report, "run_echo") == {"args": [1, "two", [3.0]], "args_type": "tuple",
                                         "kwargs": {"key": "value", "nested": {"n": [1, 2]}}}


def test_ran_on_our_endpoint_with_our_dill(report):
    """The function was pickled by the SDK's dill and ran under ours."""
    import dill

    name, data = report
    remote = step(report, "remote_runtime")
    assert remote["dill"] == dill.__version__
    assert str(VENVS) not in remote["executable"]
    assert data["client_dill"] == {"gc419": "0.3.9", "fx1013": "0.3.5.1"}[name]


def test_batch_run_and_get_batch_result(report, endpoint):
    name, _ = report
    b = step(report, "batch")
    assert b["statuses"] == ["success"]
    assert b["completion_t_set"]
    assert b["square"] == [0, 1, 4, 9, 16]
    assert b["add"] == [103]
    if name == "gc419":
        assert b["endpoint_id"] == endpoint
        assert b["n_tasks"] == {"square": 5, "add": 1}
    else:
        assert b["n_tasks"] == 6


def test_remote_exception_raises_task_execution_failed(report):
    name, _ = report
    f = step(report, "failure")
    assert f["raised"] and f["raised"].rsplit(".", 1)[-1] == SDKS[name][3], f
    tb = f["remote_data"]
    assert "Traceback (most recent call last)" in tb
    assert f"ValueError: compat-boom {name}" in tb
    assert "in boom" in tb
    assert f"ValueError: compat-boom {name}" in f["str"]
    assert float(f["completion_t"]) > 0


def test_worker_environment_in_task_details(report, endpoint):
    """4.19 compares the worker's Python/dill (task ``details``) with its own and
    warns once per endpoint: the warning must name the real versions, never
    ``UnknownPy``/``UnknownDill``, and no warning when they match."""
    import platform

    import dill

    name, data = report
    if name != "gc419":
        pytest.skip("funcx 1.0.13 does not read task details")
    env_warnings = [w for w in data["warnings"] if "Environment differences" in w]
    assert not any("Unknown" in w for w in env_warnings), env_warnings
    if (data["client_dill"], data["client_python"]) == (dill.__version__,
                                                        platform.python_version()):
        assert env_warnings == []
    else:
        assert len(env_warnings) == 1, env_warnings
        assert f"Dill {dill.__version__}" in env_warnings[0]
        assert f"Python {platform.python_version()}" in env_warnings[0]
        assert endpoint in env_warnings[0]


def test_register_source_code(report):
    """4.19's ``register_source_code``: raw source with ``"serialized": false``."""
    name, _ = report
    if name != "gc419":
        pytest.skip("funcx 1.0.13 has no register_source_code")
    assert step(report, "run_source_code") == 5.0


def test_results_as_json_asked_by_the_public_sdk(report, http):
    """4.19's ``create_batch(result_serializers=[...JSONData])``: the endpoint
    writes the result as JSON (README "Serializers") and the SDK reads it."""
    name, _ = report
    if name != "gc419":
        pytest.skip("funcx 1.0.13 has no result_serializers")
    got = step(report, "result_serializers")
    # JSON has no tuples: the SDK reads back lists
    assert got["value"] == {"args": [1, "two"], "kwargs": {"k": [3]}, "args_type": "tuple"}
    doc = http.get(f"{http.base_url}/v2/tasks/{got['task_id']}", timeout=30).json()
    assert doc["result"].startswith("11\n")
    assert json.loads(doc["result"][3:])["kwargs"] == {"k": [3]}


def test_all_code_strategies_from_the_public_sdk(report):
    """4.19's ``Client(code_serialization_strategy=AllCodeStrategies())``: the
    endpoint takes the first of its parts that gives it the function."""
    name, _ = report
    if name != "gc419":
        pytest.skip("funcx 1.0.13 has no AllCodeStrategies")
    assert step(report, "all_code_strategies") == 81
