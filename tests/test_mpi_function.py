"""MPIFunction and MPI mode (issue 18 item 2): the pure launcher logic of
endpoint.mpi, the Config options, the refusal of a task asking more nodes
than a block has, and real runs: Debian's OpenMPI ``mpiexec`` with 2 ranks on
an endpoint in MPI mode, and ``srun`` in the one-node Slurm fixture (slow).

OpenMPI is installed by .ci/run (``openmpi-bin``): outside CI a missing
``mpiexec`` skips the live test, under CI=true it fails.
"""
from __future__ import annotations

import os
import shutil

import pytest
from test_slurm import slurm  # noqa: F401 - the one-node Slurm fixture

from endpoint.mpi import (
    MPIMode,
    MPIRequest,
    MPIRequestError,
    NodePool,
    NodesExceeded,
    block_nodes,
    check_fits,
    expand_nodelist,
    launcher_prefix,
    mpi_request,
    task_environment,
)
from funcx import FuncXExecutor, MPIFunction, ShellFunction
from funcx.errors import ResourceSpecificationError
from funcx.protocol import error_codes
from funcx.protocol.messages import NodesOverLimit, check_within_limits, endpoint_limits
from tests.live import endpoint_with_config as running_config

RESULT_S = 90
#: as root, OpenMPI refuses to start without this option
ROOT_OPTIONS = "--allow-run-as-root" if os.geteuid() == 0 else ""


# ----------------------------------------------------------------- pure logic
def test_mpi_request_fills_in_the_missing_fields():
    assert mpi_request({}) is None and mpi_request({"walltime": 5}) is None
    assert mpi_request({"num_nodes": 2, "ranks_per_node": 4}) == MPIRequest(2, 4, 8)
    assert mpi_request({"num_ranks": 6, "num_nodes": 2}) == MPIRequest(2, 3, 6)
    assert mpi_request({"num_ranks": 5, "num_nodes": 2}) == MPIRequest(2, 3, 5)
    assert mpi_request({"ranks_per_node": 2}) == MPIRequest(1, 2, 2)
    assert mpi_request({"num_nodes": 2, "launcher_options": "--bind-to core"}) == \
        MPIRequest(2, 1, 2, "--bind-to core")
    with pytest.raises(MPIRequestError, match="num_ranks=9 does not fit num_nodes=2 x "
                                              "ranks_per_node=4"):
        mpi_request({"num_nodes": 2, "ranks_per_node": 4, "num_ranks": 9})


def test_launcher_prefixes():
    r = MPIRequest(2, 2, 4, "--bind-to core")
    assert launcher_prefix("mpiexec", r, ["a", "b"]) == \
        "mpiexec -n 4 --host a:2,b:2 --bind-to core"
    assert launcher_prefix("srun", r, ["a", "b"]) == \
        "srun -N 2 -n 4 --ntasks-per-node 2 --nodelist a,b --bind-to core"
    assert launcher_prefix("aprun", r, ["a", "b"]) == "aprun -n 4 -N 2 -L a,b --bind-to core"
    assert launcher_prefix("mpiexec", MPIRequest(1, 1, 1, "-x 'A=b c'"), ["h"]) == \
        "mpiexec -n 1 --host h:1 -x 'A=b c'"  # options stay one shell word each
    with pytest.raises(ValueError, match="mpi_launcher must be one of mpiexec, srun, aprun"):
        launcher_prefix("mpirun", r, ["a"])


def test_task_environment_names_the_launcher_nodes_and_counts():
    env = task_environment("srun", MPIRequest(2, 3, 6), ["n1", "n2"])
    assert env["PARSL_MPI_PREFIX"] == env["PARSL_SRUN_PREFIX"]
    assert env["PARSL_MPIEXEC_PREFIX"].startswith("mpiexec -n 6 --host n1:3,n2:3")
    assert (env["PARSL_MPI_NODELIST"], env["PARSL_NUM_NODES"], env["PARSL_RANKS_PER_NODE"],
            env["PARSL_NUM_RANKS"]) == ("n1,n2", "2", "3", "6")


def test_slurm_node_lists_and_block_nodes():
    assert expand_nodelist("n[01-03,7],gpu2") == ["n01", "n02", "n03", "n7", "gpu2"]
    assert expand_nodelist("node1") == ["node1"]
    assert block_nodes({"SLURM_JOB_NODELIST": "c[1-2]"}, "me") == ["c1", "c2"]
    assert block_nodes({}, "me", "a\na\nb\n") == ["a", "b"]  # a PBS node file: a line a rank
    assert block_nodes({}, "me") == ["me"]
    with pytest.raises(ValueError, match="cannot read the node list"):
        expand_nodelist("n[a-b]")


def test_node_pool_holds_nodes_per_task_and_frees_them():
    pool = NodePool(["a", "b", "c"])
    assert pool.take("t1", 2) == ["a", "b"]
    assert pool.take("t2", 2) is None  # one free: t2 waits
    assert pool.take("t3", 1) == ["c"]
    pool.release("t1")
    assert pool.take("t2", 2) == ["a", "b"]
    pool.keep_only(["t2"])  # t3 finished
    assert pool.take("t4", 1) == ["c"]


def test_mpi_mode_refuses_what_a_block_can_never_hold():
    mode = MPIMode("mpiexec", ["h1"])
    refusal = mode.refusal({"num_nodes": 2})
    assert isinstance(refusal, NodesExceeded)
    assert "num_nodes=2" in str(refusal) and "has 1 node (nodes_per_block=1)" in str(refusal)
    assert isinstance(mode.refusal({"num_nodes": 1, "ranks_per_node": 1, "num_ranks": 3}),
                      MPIRequestError)
    assert mode.refusal({"num_nodes": 1, "ranks_per_node": 2}) is None
    assert mode.claim("plain", {}) == {}  # a task without MPI resources holds no node
    env = mode.claim("t1", {"ranks_per_node": 2})
    assert env is not None and env["PARSL_MPI_PREFIX"] == "mpiexec -n 2 --host h1:2"
    assert mode.claim("t2", {"ranks_per_node": 2}) is None  # h1 is busy: t2 waits
    with pytest.raises(NodesExceeded):
        check_fits(MPIRequest(3, 1, 3), 2)
    with pytest.raises(ValueError):
        MPIMode("mpirun", ["h"])


def test_submit_time_bound_is_its_own_error():
    limits = endpoint_limits({"max_nodes": 2})
    check_within_limits({"num_nodes": 2}, limits)
    with pytest.raises(NodesOverLimit, match="num_nodes 3 exceeds the 2 nodes of a block"):
        check_within_limits({"num_nodes": 3}, limits)


def test_config_mpi_options():
    from parsl.launchers import SimpleLauncher, SrunLauncher
    from parsl.providers import LocalProvider, SlurmProvider

    from endpoint.config import Config

    c = Config(provider=LocalProvider(), mpi_launcher="mpiexec")
    assert c.limits()["max_nodes"] == 1
    assert "max_nodes" not in Config(provider=LocalProvider()).limits()
    with pytest.raises(ValueError, match="mpi_launcher must be one of mpiexec, srun, aprun"):
        Config(provider=LocalProvider(), mpi_launcher="mpirun")
    with pytest.raises(ValueError, match="needs the provider's launcher to be "
                                         "parsl.launchers.SimpleLauncher"):
        Config(provider=SlurmProvider(nodes_per_block=2, launcher=SrunLauncher()),
               mpi_launcher="srun")
    c = Config(provider=SlurmProvider(nodes_per_block=4, launcher=SimpleLauncher()),
               mpi_launcher="srun")
    assert c.limits()["max_nodes"] == 4 and c.nodes_per_block() == 4


# ----------------------------------------------------------- a real endpoint
MPI_CONFIG = '''
from parsl.providers import LocalProvider

from endpoint.config import Config

config = Config(
    provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
    max_workers_per_node=2,
    mpi_launcher="mpiexec",
    heartbeat_period=0.5,
    heartbeat_threshold=5,
)
'''


def endpoint_with_config(fxc, tag: str, config: str):
    """An endpoint with ``config`` as its config.py; started, then stopped and deleted."""
    return running_config(fxc, f"mpi-{tag}", config)


def need(program: str) -> None:
    if shutil.which(program) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{program} is missing under CI (.ci/run installs openmpi-bin)")
        pytest.skip(f"{program} is not installed (Debian: apt-get install openmpi-bin)")


@pytest.fixture(scope="module")
def mpi_endpoint(fxc, service):
    need("mpiexec")
    with endpoint_with_config(fxc, "mpiexec", MPI_CONFIG) as ep:
        yield ep.eid


def test_mpiexec_two_ranks_on_an_endpoint_in_mpi_mode(fxc, mpi_endpoint):
    ranks = MPIFunction("bash -c 'echo rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE "
                        "{tag}'")
    spec = {"num_nodes": 1, "ranks_per_node": 2, "launcher_options": ROOT_OPTIONS}
    with FuncXExecutor(endpoint_id=mpi_endpoint, client=fxc,
                       resource_specification=spec) as fxe:
        r = fxe.submit(ranks, tag="here").result(RESULT_S)
        env = fxe.submit(MPIFunction("bash -c 'echo $PARSL_NUM_RANKS $PARSL_MPI_NODELIST'")) \
            .result(RESULT_S)
    assert r.returncode == 0, r.stderr
    assert r.cmd.startswith("mpiexec -n 2 --host ")
    assert sorted(r.stdout.splitlines()) == ["rank 0 of 2 here", "rank 1 of 2 here"]
    assert env.returncode == 0, env.stderr
    assert env.stdout.split()[::2] == ["2", "2"]  # each rank saw the task's variables


@pytest.mark.slow  # 5-7 s of real mpiexec runs: the slow CI step
def test_each_task_keeps_the_resource_specification_it_was_submitted_with(fxc, mpi_endpoint):
    """Changing the executor's resource_specification affects later submits only,
    even for tasks still queued in the same batch."""
    with FuncXExecutor(endpoint_id=mpi_endpoint, client=fxc) as fxe:
        futures = []
        for ranks in (1, 2, 1):
            fxe.resource_specification = {"ranks_per_node": ranks,
                                          "launcher_options": ROOT_OPTIONS}
            futures.append(fxe.submit(MPIFunction("true")))
        cmds = [f.result(RESULT_S).cmd for f in futures]
    assert [c.split()[:3] for c in cmds] == [["mpiexec", "-n", str(n)] for n in (1, 2, 1)]


@pytest.mark.slow  # 5-7 s of real mpiexec runs: the slow CI step
def test_an_mpi_task_holds_its_node_and_others_go_ahead(fxc, mpi_endpoint, tmp_path):
    """Two MPI tasks that each need the block's one node run one after the
    other; a task without MPI resources runs beside them, not behind them.
    The first holds the node until the test opens a gate (no timing)."""
    gate = tmp_path / "gate"
    held = MPIFunction("bash -c 'date +%s.%N; while [ ! -e {gate} ]; do sleep 0.05; done; "
                       "date +%s.%N'")
    spec = {"num_nodes": 1, "ranks_per_node": 1, "launcher_options": ROOT_OPTIONS}
    with FuncXExecutor(endpoint_id=mpi_endpoint, client=fxc,
                       resource_specification=spec) as mpi, \
            FuncXExecutor(endpoint_id=mpi_endpoint, client=fxc) as plain:
        both = [mpi.submit(held, gate=str(gate)) for _ in range(2)]
        try:  # with the node held (and the second MPI task waiting for it), the
            # endpoint's other worker runs a task that needs no node
            assert plain.submit(ShellFunction("true")).result(30).returncode == 0
            assert not any(f.done() for f in both)
        finally:  # never leave the MPI tasks (and the executors' shutdown) waiting
            gate.touch()
        spans = sorted(tuple(map(float, f.result(RESULT_S).stdout.split())) for f in both)
    (s1, e1), (s2, e2) = spans
    assert s2 >= e1, f"the two MPI tasks overlapped on the one node: {spans}"


def test_more_nodes_than_a_block_has_is_refused_at_submit(fxc, mpi_endpoint):
    batch = fxc.create_batch(resource_specification={"num_nodes": 3})
    batch.add(endpoint_id=mpi_endpoint, function_id=fxc.register_function(MPIFunction("hostname")))
    with pytest.raises(ResourceSpecificationError) as err:
        fxc.batch_run(batch)
    assert err.value.code == error_codes.MPI_NODES_EXCEEDED
    assert "num_nodes 3 exceeds the 1 node of a block" in err.value.message
    batch = fxc.create_batch(resource_specification={"num_ranks": 5, "ranks_per_node": 2})
    batch.add(endpoint_id=mpi_endpoint, function_id=fxc.register_function(MPIFunction("true")))
    with pytest.raises(ResourceSpecificationError) as err:
        fxc.batch_run(batch)
    assert err.value.code == error_codes.RESOURCE_SPEC_INVALID
    assert "num_ranks=5 does not fit num_nodes=1 x ranks_per_node=2" in err.value.message


def test_the_manager_refuses_too_many_nodes_itself(fxc, mpi_endpoint, redis_client):
    """Defence in depth: a task that reached the endpoint without the submit-time
    check (a record whose limits predate MPI mode) fails alone, at the manager,
    naming both numbers; the endpoint keeps serving."""
    from funcx.protocol import keys

    saved = redis_client.hget(keys.endpoint(mpi_endpoint), "limits")
    redis_client.hset(keys.endpoint(mpi_endpoint), "limits", "{}")
    try:
        batch = fxc.create_batch(resource_specification={"num_nodes": 2})
        batch.add(endpoint_id=mpi_endpoint,
                  function_id=fxc.register_function(MPIFunction("hostname")))
        tid = fxc.batch_run(batch)[0]
        done = fxc.wait([tid], timeout=RESULT_S)[tid]
    finally:
        redis_client.hset(keys.endpoint(mpi_endpoint), "limits", saved)
    assert done["status"] == "failed"
    assert isinstance(done["exception"], NodesExceeded)
    assert "num_nodes=2 but a block of this endpoint has 1 node" in str(done["exception"])
    raw = fxc.web_client.get(f"/v2/tasks/{tid}")  # the task document as stored
    assert raw["details"]["error_code"] == error_codes.MPI_NODES_EXCEEDED, raw
    with FuncXExecutor(endpoint_id=mpi_endpoint, client=fxc) as fxe:  # still serving
        assert fxe.submit(ShellFunction("echo ok")).result(RESULT_S).stdout == "ok\n"


# --------------------------------------------------------------- Slurm (srun)
SLURM_CONFIG = '''
from parsl.launchers import SimpleLauncher
from parsl.providers import SlurmProvider

from endpoint.config import Config

config = Config(
    provider=SlurmProvider(partition="debug", nodes_per_block=1, init_blocks=0, min_blocks=0,
                           max_blocks=1, walltime="00:10:00", exclusive=False,
                           cores_per_node=2, cmd_timeout=30, launcher=SimpleLauncher()),
    max_workers_per_node=2,
    mpi_launcher="srun",
    max_idletime=2,
    heartbeat_period=0.5,
    heartbeat_threshold=5,
    working_dir={workdir!r},
)
'''


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.usefixtures("slurm")
def test_srun_in_the_slurm_fixture(fxc, service, tmp_path):
    with endpoint_with_config(fxc, "srun", SLURM_CONFIG.format(workdir=str(tmp_path))) as ep:
        spec = {"num_nodes": 1, "ranks_per_node": 2}
        with FuncXExecutor(endpoint_id=ep.eid, client=fxc, resource_specification=spec) as fxe:
            r = fxe.submit(MPIFunction("bash -c 'echo rank $SLURM_PROCID of $SLURM_NTASKS "
                                       "in $SLURM_JOB_ID'")).result(180)
    assert r.returncode == 0, (r.cmd, r.stderr)
    assert r.cmd.startswith("srun -N 1 -n 2 --ntasks-per-node 2 --nodelist ")
    lines = sorted(r.stdout.splitlines())
    assert [x.split(" in ")[0] for x in lines] == ["rank 0 of 2", "rank 1 of 2"]
    assert len({x.split(" in ")[1] for x in lines}) == 1  # both inside the block's job
