"""Container workers.

No container engine can run here, so the end-to-end test uses a FAKE runtime:
an executable script standing in for ``docker``.  It records each command line
it is given (one JSON line per invocation), applies the ``-e``/``--env``
variables it sees, and then execs the real Python with whatever follows the
image's ``python3`` — so the worker really starts, from exactly the command the
manager built, and really runs the tasks.  What it proves: the endpoint routes
container tasks to container workers started with the right command line,
keeps them warm (few runtime invocations), and tells the SDK which container
ran a task; it does not prove that a real image works.

The command lines for every runtime are unit-tested directly.
"""
from __future__ import annotations

import json
import stat
import sys
import uuid
from pathlib import Path

import pytest

IMAGE = "example.org/sci/image:1"
WAIT_S = 60


# ------------------------------------------------------------- remote functions
def square_where(x):
    import os

    return [x * x, os.environ.get("FUNCX_CONTAINER_ID"), os.getpid()]


# ------------------------------------------------------------------ unit tests
ARGS = ["ipc:///tmp/m/workers", "0.1", "/work/dir"]
INNER = ["python3", "-m", "endpoint.worker", *ARGS]


@pytest.mark.parametrize("mode", ["docker", "podman"])
def test_worker_command_oci(mode):
    from endpoint.containers import worker_command

    cmd = worker_command(mode, IMAGE, ARGS, "/tmp/m", "/work/dir", options="--gpus all",
                         container_id="c-1")
    assert cmd[:3] == [mode, "run", "--rm"]
    assert cmd[-len(INNER):] == INNER and cmd[-len(INNER) - 1] == IMAGE  # image, then command
    pairs = list(zip(cmd, cmd[1:]))
    assert ("-v", "/tmp/m:/tmp/m") in pairs  # the manager's ipc socket is reachable inside
    assert ("-v", "/work/dir:/work/dir") in pairs and ("-w", "/work/dir") in pairs
    assert ("-e", "FUNCX_CONTAINER_ID=c-1") in pairs
    assert cmd.index("--gpus") < cmd.index(IMAGE) and "all" in cmd  # options before the image
    assert worker_command(mode, IMAGE, ARGS, "/tmp/m", "/w", runtime="/opt/bin/rt")[0] == "/opt/bin/rt"


@pytest.mark.parametrize("mode", ["singularity", "apptainer"])
def test_worker_command_hpc(mode):
    from endpoint.containers import worker_command

    cmd = worker_command(mode, "/images/sci.sif", ARGS, "/tmp/m", "/work/dir",
                         options="--nv", container_id="c-2")
    assert cmd[:2] == [mode, "exec"]
    assert "run" not in cmd[:2] and "--rm" not in cmd
    pairs = list(zip(cmd, cmd[1:]))
    assert ("--bind", "/tmp/m,/work/dir") in pairs and ("--pwd", "/work/dir") in pairs
    assert ("--env", "FUNCX_CONTAINER_ID=c-2") in pairs
    assert cmd[-len(INNER):] == INNER and cmd[-len(INNER) - 1] == "/images/sci.sif"
    assert cmd.index("--nv") < cmd.index("/images/sci.sif")
    assert worker_command(mode, "x.sif", ARGS, "/t", "/w", runtime="/usr/local/bin/ap")[0] \
        == "/usr/local/bin/ap"


def test_worker_command_refuses_no_container():
    from endpoint.containers import worker_command

    with pytest.raises(ValueError, match="no_container"):
        worker_command("no_container", IMAGE, ARGS, "/tmp/m", "/w")


# ----------------------------------------------------- the fake runtime, e2e
FAKE_RUNTIME = '''#!{python}
"""A stand-in for `docker`: log the command, apply -e/--env, run what follows python3."""
import json
import os
import sys

argv = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
i = 0
while i < len(argv):
    if argv[i] in ("-e", "--env") and i + 1 < len(argv):
        name, _, value = argv[i + 1].partition("=")
        os.environ[name] = value
        i += 2
    else:
        i += 1
inner = argv[argv.index("python3") + 1:]
os.execv(sys.executable, [sys.executable, *inner])
'''

CONFIG = """from parsl.providers import LocalProvider

from endpoint.config import Config

config = Config(
    provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
    max_workers_per_node=2,
    heartbeat_period=0.5,
    heartbeat_threshold=3,
    worker_mode="docker",
    container_runtime={runtime!r},
)
"""


@pytest.fixture
def fake_runtime(tmp_path) -> tuple[Path, Path]:
    log = tmp_path / "runtime.log"
    script = tmp_path / "fake-docker"
    script.write_text(FAKE_RUNTIME.format(python=sys.executable, log=str(log)))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script, log


@pytest.fixture
def container_endpoint(fxc, fake_runtime):
    from endpoint import daemon
    from endpoint.paths import EndpointDir

    script, _ = fake_runtime
    name = f"containers-{uuid.uuid4().hex[:6]}"
    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, mode=0o700)
    ep.config_file.write_text(CONFIG.format(runtime=str(script)))
    eid = daemon.start(name)
    try:
        yield eid
    finally:
        daemon.stop(name)
        fxc.delete_endpoint(eid)


def _invocations(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_container_tasks_run_in_warm_container_workers(fxc, http, fake_runtime,
                                                       container_endpoint):
    _, log = fake_runtime
    eid = container_endpoint
    cid = fxc.register_container(IMAGE, "docker", name="sci")
    in_container = fxc.register_function(square_where, container_uuid=cid)
    plain = fxc.register_function(square_where)

    def run(items):  # (x, in a container?) -> task ids, in order
        batch = fxc.create_batch()
        for x, boxed in items:
            batch.add(x, endpoint_id=eid, function_id=in_container if boxed else plain)
        tids = fxc.batch_run(batch)
        fxc.wait(tids, timeout=WAIT_S)
        return tids

    # plain tasks, then a run of container tasks, then a mix
    items = [(x, False) for x in range(4)] + [(x, True) for x in range(4, 16)] \
        + [(x, x % 2 == 0) for x in range(16, 24)]
    tids = []
    for chunk in (items[:4], items[4:16], items[16:]):
        tids += run(chunk)
    n_boxed = sum(boxed for _, boxed in items)

    for (x, boxed), tid in zip(items, tids):
        value, container, _ = fxc.get_result(tid)
        assert value == x * x
        assert container == (cid if boxed else None), (x, boxed, container)
        doc = http.get(f"{http.base_url}/v2/tasks/{tid}").json()
        assert doc["status"] == "success"
        assert (doc.get("details") or {}).get("container_id") == (cid if boxed else None), doc

    calls = _invocations(log)
    assert calls, "the container runtime was never invoked"
    for argv in calls:
        assert argv[:2] == ["run", "--rm"], argv
        at = argv.index(IMAGE)
        assert argv[at + 1:at + 4] == ["python3", "-m", "endpoint.worker"], argv
        assert f"FUNCX_CONTAINER_ID={cid}" in argv
        ipc_dir = argv[at + 4][len("ipc://"):].rsplit("/", 1)[0]
        assert f"{ipc_dir}:{ipc_dir}" in argv  # the manager's socket directory is mounted
    # warm reuse: a container worker serves many tasks; a new one starts only
    # when a worker is switched between plain and container work
    assert len(calls) <= 4 < n_boxed, f"{len(calls)} runtime invocations for {n_boxed} tasks"
    pids = {fxc.get_result(t)[2] for (x, boxed), t in zip(items[4:16], tids[4:16])}
    assert len(pids) <= 2  # the 12 container tasks in a row ran in at most 2 containers
