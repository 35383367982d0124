"""The endpoint side of the funcX 0.0.1a5 manual (seeds/002): the
``funcx-endpoint`` commands (2.1-2.6) and the ``funcx.config.Config`` reference
(5.1.3), each as the manual writes it.

Real parts: configs go through the real loader (``endpoint.config_file.load``),
endpoints are started as real daemons against the session's service and run
real tasks; the container modes use a FAKE runtime (no engine can run here)
that logs its command line and execs the worker it was asked to start.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

WAIT_S = 60

#: the Config of the manual's reference (5.1.3), every option spelled and valued
#: as its signature shows it (the provider is the documented LocalProvider,
#: with one block so the test stays small; its ``walltime`` and ``channel`` are
#: gone from today's Parsl, whose LocalProvider refuses them)
MANUAL_CONFIG = """
from parsl.providers import LocalProvider

from funcx.config import Config
from funcx.strategies import SimpleStrategy

config = Config(
    provider=LocalProvider(cmd_timeout=30, init_blocks=1, min_blocks=0, max_blocks=1,
                           nodes_per_block=1, parallelism=1, worker_init=''),
    scaling_enabled=True,
    worker_ports=None,
    worker_port_range=(54000, 55000),
    strategy=SimpleStrategy(),
    max_workers_per_node=float('inf'),
    cores_per_worker=1.0,
    mem_per_worker=None,
    launch_cmd=None,
    worker_mode='no_container',
    scheduler_mode='hard',
    container_type=None,
    prefetch_capacity=10,
    heartbeat_period=2,
    heartbeat_threshold=10,
    poll_period=10,
    working_dir=None,
    worker_debug=False,
)
"""


# ------------------------------------------------------------- remote functions
def where_am_i():
    import os

    return {"cwd": os.getcwd(), "pid": os.getpid(),
            "mark": os.environ.get("DOC_LAUNCH_MARK"),
            "container": os.environ.get("FUNCX_CONTAINER_ID")}


# ------------------------------------------------------------------- helpers
def cli(*args: str, env: dict | None = None):
    from endpoint.cli import app

    return CliRunner().invoke(app, list(args), env=env)


def write_config(name: str, text: str) -> Path:
    from endpoint.paths import EndpointDir

    ep = EndpointDir(name)
    ep.path.mkdir(parents=True, mode=0o700, exist_ok=True)
    ep.config_file.write_text(textwrap.dedent(text))
    return ep.path


def load_text(tmp_path: Path, text: str):
    from endpoint.config_file import load

    path = tmp_path / "config.py"
    path.write_text(textwrap.dedent(text))
    return load(path)


def warnings_of(**options) -> list[str]:
    from funcx.config import Config

    return Config(**options).start_warnings()


def run_all(fxc, eid: str, fid: str, n: int) -> list:
    batch = fxc.create_batch()
    for _ in range(n):
        batch.add(endpoint_id=eid, function_id=fid)
    tids = fxc.batch_run(batch)
    fxc.wait(tids, timeout=WAIT_S)
    return [fxc.get_result(t) for t in tids]


def log_lines(name: str, needle: str) -> list[str]:
    from endpoint.paths import EndpointDir

    return [line for line in EndpointDir(name).log_file.read_text().splitlines()
            if needle in line]


@pytest.fixture
def fresh_name(fxc):
    """A unique endpoint name; the endpoint is stopped and deleted afterwards."""
    from endpoint import daemon
    from endpoint.daemon import saved_id
    from endpoint.paths import EndpointDir

    name = f"doc-{uuid.uuid4().hex[:6]}"
    yield name
    daemon.stop(name)
    eid = saved_id(EndpointDir(name))
    if eid:
        fxc.delete_endpoint(eid)


# ============================================ the reference's Config, end to end
def test_manual_config_starts_and_runs_tasks(service, fxc, fresh_name, tmp_path, monkeypatch):
    """The reference's Config, every option as documented, loaded from
    config.py and started with `funcx-endpoint start` from an unrelated
    directory: it runs tasks (max_workers_per_node=inf: one worker per core),
    in the endpoint's directory (working_dir=None), and says once, at start,
    which options do not apply here."""
    from endpoint.paths import EndpointDir

    name = fresh_name
    write_config(name, MANUAL_CONFIG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = cli("start", name)
    assert r.exit_code == 0, r.output
    eid = re.search(r"running: (\S+)", r.stdout).group(1)
    # the two documented options that cannot apply, said on the terminal once each
    for option in ("worker_port_range=(54000, 55000)", "scheduler_mode='hard'"):
        assert r.stderr.count(option) == 1, r.stderr
    assert "worker_ports" not in r.stderr.replace("worker_port_range", "")  # None: nothing to say

    fid = fxc.register_function(where_am_i)
    results = run_all(fxc, eid, fid, 8)
    cwd = {res["cwd"] for res in results}
    assert cwd == {str(EndpointDir(name).path / "tasks_working_dir")}
    assert str(elsewhere) not in cwd
    pids = {res["pid"] for res in results}
    assert 1 <= len(pids) <= (os.cpu_count() or 1)

    # and in the endpoint's log: once each, at WARNING
    for option in ("worker_port_range=", "scheduler_mode="):
        lines = log_lines(name, option)
        assert len(lines) == 1 and " WARNING " in lines[0], lines
    assert not log_lines(name, "poll_period")  # 10 is milliseconds: nothing to say


def test_manual_config_loads_as_documented(tmp_path, monkeypatch):
    """The reference's values, read through the real loader."""
    monkeypatch.setattr("os.cpu_count", lambda: 6)
    config = load_text(tmp_path, MANUAL_CONFIG)
    assert config.workers_per_node() == 6  # inf: one per core
    assert config.max_workers_per_node == 0 and not math.isinf(config.max_workers_per_node)
    assert config.poll_period == 10 and config.poll_period.seconds == pytest.approx(0.01)
    assert config.working_dir == str(tmp_path / "tasks_working_dir")
    assert config.strategy == "simple" and config.max_idletime == 60  # SimpleStrategy's default
    assert config.worker_mode == "no_container" and config.worker_debug is False
    assert (config.heartbeat_period, config.heartbeat_threshold) == (2, 10)
    assert config.prefetch_capacity == 10 and config.scaling_enabled


# =============================================================== each option
def test_max_workers_per_node_inf_makes_an_integer_manager_command(tmp_path, monkeypatch):
    from endpoint.blocks import Blocks
    from endpoint.launch import ManagerLaunch
    from funcx.config import Config

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    blocks = Blocks(Config(max_workers_per_node=float("inf")), "tcp://127.0.0.1:1", tmp_path,
                    tmp_path / "keys")
    argv = blocks.launch("0").to_argv()
    assert argv[argv.index("--workers") + 1] == "4"
    assert ManagerLaunch.from_argv(argv).workers == 4  # the manager accepts it
    assert Config(max_workers_per_node=float("inf"), cores_per_worker=2).workers_per_node() == 2
    assert Config(max_workers_per_node=3.0).workers_per_node() == 3
    with pytest.raises(ValueError, match="max_workers_per_node"):
        Config(max_workers_per_node=2.5)
    with pytest.raises(ValueError, match="max_workers_per_node"):
        Config(max_workers_per_node=float("nan"))


def test_poll_period_is_milliseconds(tmp_path):
    from endpoint.config import DEFAULT_POLL_PERIOD_MS
    from endpoint.interchange import Interchange
    from funcx.config import Config

    assert Config(poll_period=10).poll_period.seconds == pytest.approx(0.010)
    assert Config(poll_period=250).poll_period.seconds == pytest.approx(0.25)
    assert Config().poll_period == DEFAULT_POLL_PERIOD_MS == 100  # the former 0.1 s
    assert Config().start_warnings() == []
    ix = Interchange("127.0.0.1", 0, lambda _: None, 0.5, 3.0, 1,
                     Config(poll_period=20).poll_period, key_dir=tmp_path / "curve")
    try:
        assert ix.poll_period == pytest.approx(0.02)  # the interchange counts in seconds
    finally:
        ix.close()
    for bad in (0, -5, float("inf"), "10"):
        with pytest.raises(ValueError, match="poll_period"):
            Config(poll_period=bad)


def test_poll_period_that_looks_like_seconds_is_warned_about():
    from funcx.config import Config

    config = Config(poll_period=0.1)
    assert config.poll_period == 100  # read as seconds, kept working
    [text] = config.start_warnings()
    assert "poll_period=0.1" in text and "milliseconds" in text and "poll_period=100" in text


def test_working_dir_default_and_relative(tmp_path):
    home = tmp_path / "ep"
    home.mkdir()
    from endpoint.config_file import load

    (home / "config.py").write_text("from funcx.config import Config\nconfig = Config()\n")
    assert load(home / "config.py").working_dir == str(home / "tasks_working_dir")
    (home / "config.py").write_text(
        "from funcx.config import Config\nconfig = Config(working_dir='scratch')\n")
    assert load(home / "config.py").working_dir == str(home / "scratch")
    (home / "config.py").write_text(
        f"from funcx.config import Config\nconfig = Config(working_dir={str(tmp_path / 'abs')!r})\n")
    assert load(home / "config.py").working_dir == str(tmp_path / "abs")


@pytest.mark.parametrize("option, value, says", [
    ("worker_ports", (54001, 54002), "worker_ports=(54001, 54002) is ignored"),
    ("worker_port_range", (54000, 55000), "worker_port_range=(54000, 55000) is ignored"),
    ("scheduler_mode", "hard", "scheduler_mode='hard' is ignored"),
    ("scheduler_mode", "soft", "scheduler_mode='soft' is ignored"),
    ("container_type", "Docker", "container_type='Docker' is ignored"),
    ("launch_cmd", "process_worker_pool.py {debug} -c {cores_per_worker} "
                   "-task_url={task_url} -result_url={result_url}",
     "launch_cmd is ignored: it does not contain {manager}"),
    ("strategy", "htex_auto_scale", "strategy='htex_auto_scale' is not known here"),
])
def test_accepted_option_is_warned_about_once(option, value, says):
    texts = warnings_of(**{option: value})
    assert len(texts) == 1 and says in texts[0], texts


def test_bad_values_of_documented_options_are_refused():
    from funcx.config import Config

    with pytest.raises(ValueError, match="scheduler_mode"):
        Config(scheduler_mode="greedy")
    with pytest.raises(ValueError, match="launch_cmd.*nodes"):
        Config(launch_cmd="{manager} {nodes}")
    with pytest.raises(ValueError, match="worker_mode"):
        Config(worker_mode="singularity_forever")


def test_strategy_forms():
    from funcx.config import Config
    from funcx.strategies import KubeSimpleStrategy, SimpleStrategy

    assert Config(strategy=SimpleStrategy(max_idletime=30)).max_idletime == 30
    assert Config(strategy=KubeSimpleStrategy()).strategy == "simple"
    none = Config(strategy=None)
    assert none.strategy == "none" and none.scaling_enabled is False
    assert Config(strategy=SimpleStrategy()).start_warnings() == []


def test_documented_worker_modes_map_onto_singularity(tmp_path):
    from endpoint.blocks import Blocks
    from endpoint.launch import ManagerLaunch
    from funcx.config import Config

    reuse = Config(worker_mode="singularity_reuse")
    single = Config(worker_mode="singularity_single_use")
    assert (reuse.worker_mode, reuse.container_single_use) == ("singularity", False)
    assert (single.worker_mode, single.container_single_use) == ("singularity", True)
    assert reuse.start_warnings() == single.start_warnings() == []
    launch = Blocks(single, "tcp://127.0.0.1:1", tmp_path, tmp_path / "k").launch("0")
    again = ManagerLaunch.from_argv(launch.to_argv())
    assert again.single_use and again.worker_mode == "singularity"
    # container_type naming the same runtime says nothing
    assert Config(worker_mode="singularity_reuse", container_type="Singularity") \
        .start_warnings() == []


def test_launch_cmd_wraps_the_manager_command(tmp_path):
    from endpoint.blocks import Blocks
    from funcx.config import Config

    config = Config(launch_cmd="nice -n 5 {manager} # {cores_per_worker} {task_url} {debug}",
                    worker_debug=True, cores_per_worker=1.5)
    blocks = Blocks(config, "tcp://127.0.0.1:7", tmp_path, tmp_path / "k")
    cmd = blocks.manager_command("3")
    assert cmd.startswith("nice -n 5 ") and "-m endpoint.manager" in cmd
    assert cmd.endswith("# 1.5 tcp://127.0.0.1:7 --debug")
    assert "--debug" in cmd.split("#")[0]  # worker_debug reaches the manager
    plain = Blocks(Config(), "tcp://127.0.0.1:7", tmp_path, tmp_path / "k").manager_command("3")
    assert "--debug" not in plain and not plain.startswith("nice")


# ================== worker_debug, launch_cmd, poll_period: a real endpoint again
def test_worker_debug_and_launch_cmd_on_a_real_endpoint(service, fxc, fresh_name):
    from endpoint.paths import EndpointDir

    name = fresh_name
    write_config(name, """
        from parsl.providers import LocalProvider
        from funcx.config import Config

        config = Config(
            provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
            max_workers_per_node=1,
            launch_cmd="env DOC_LAUNCH_MARK=launched {manager}",
            worker_debug=True,
            poll_period=20,
            working_dir="work",
        )
        """)
    r = cli("start", name)
    assert r.exit_code == 0, r.output
    assert "Warning" not in r.stderr
    eid = re.search(r"running: (\S+)", r.stdout).group(1)
    fid = fxc.register_function(where_am_i)
    [res] = run_all(fxc, eid, fid, 1)
    assert res["mark"] == "launched"  # the block ran launch_cmd around the manager
    assert res["cwd"] == str(EndpointDir(name).path / "work")
    errs = list((EndpointDir(name).run_dir / "submit_scripts").glob("*.err"))
    text = "".join(p.read_text() for p in errs)
    assert re.search(r"manager DEBUG task \S+ to worker 0", text), text[-2000:]


# ========================================= container worker modes (fake runtime)
FAKE_RUNTIME = '''#!{python}
"""A stand-in for `singularity`: log the command, apply --env, run what follows python3."""
import json
import os
import sys

argv = sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
for i, a in enumerate(argv[:-1]):
    if a == "--env":
        k, _, v = argv[i + 1].partition("=")
        os.environ[k] = v
inner = argv[argv.index("python3") + 1:]
os.execv(sys.executable, [sys.executable, *inner])
'''


@pytest.mark.parametrize("mode", ["singularity_reuse", "singularity_single_use"])
def test_singularity_worker_modes(service, fxc, fresh_name, tmp_path, mode):
    log = tmp_path / "runtime.log"
    runtime = tmp_path / "fake-singularity"
    runtime.write_text(FAKE_RUNTIME.format(python=sys.executable, log=str(log)))
    runtime.chmod(runtime.stat().st_mode | stat.S_IXUSR)
    name = fresh_name
    write_config(name, f"""
        from parsl.providers import LocalProvider
        from funcx.config import Config

        config = Config(
            provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1),
            max_workers_per_node=1,
            worker_mode={mode!r},
            container_runtime={str(runtime)!r},
        )
        """)
    r = cli("start", name)
    assert r.exit_code == 0, r.output
    eid = re.search(r"running: (\S+)", r.stdout).group(1)
    cid = fxc.register_container("/images/sci.sif", "singularity", name="sci")
    fid = fxc.register_function(where_am_i, container_uuid=cid)
    results = []
    for _ in range(3):  # one after another, on the one worker
        results += run_all(fxc, eid, fid, 1)
    assert {res["container"] for res in results} == {cid}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(c[0] == "exec" and "/images/sci.sif" in c for c in calls), calls
    pids = {res["pid"] for res in results}
    if mode == "singularity_reuse":  # a warm container serves every task
        assert len(pids) == 1 and len(calls) == 1, (pids, calls)
    else:  # a fresh container for every task
        assert len(pids) == 3 and len(calls) >= 3, (pids, calls)


# ==================================================== funcx-endpoint commands
def test_help_lists_the_documented_commands():
    r = cli("--help")
    assert r.exit_code == 0
    for command in ("init", "configure", "start", "stop", "list"):
        assert re.search(rf"\b{command}\b", r.stdout), command


def test_configure_without_a_name_configures_default(tmp_path):
    home = tmp_path / "home"
    r = cli("configure", env={"FUNCX_HOME": str(home)})
    assert r.exit_code == 0, r.output
    assert (home / "default" / "config.py").exists()
    from endpoint.config_file import load

    assert load(home / "default" / "config.py").working_dir == \
        str(home / "default" / "tasks_working_dir")
    r = cli("list", env={"FUNCX_HOME": str(home)})
    assert r.exit_code == 0
    assert re.search(r"default\s*│\s*initialized\s*│\s*None", r.stdout), r.stdout
    r = cli("stop", env={"FUNCX_HOME": str(home)})  # 2.5: no name, the default endpoint
    assert r.exit_code == 0 and "Endpoint default was not running" in r.stdout


def test_init_makes_the_home_global_options_and_default_endpoint(service, token, tmp_path):
    """2.1/2.2: `funcx-endpoint init` creates the funcX directory, its global
    config.py and a "default" endpoint profile, and checks the login."""
    home = tmp_path / "home"
    (home / "credentials").mkdir(parents=True)
    (home / "credentials" / "token.json").write_text(json.dumps({"token": token}))
    env = {"FUNCX_HOME": str(home), "FUNCX_SERVICE_ADDRESS": service}
    r = cli("init", env=env)
    assert r.exit_code == 0, r.output
    assert "logged in as" in r.stdout
    assert (home / "config.py").exists() and (home / "default" / "config.py").exists()
    r = cli("list", env=env)
    assert re.search(r"default\s*│\s*initialized\s*│\s*None", r.stdout), r.stdout
    again = cli("init", env=env)  # the second time changes nothing
    assert again.exit_code == 0 and "Created" not in again.stdout


def test_global_options_reach_the_endpoints(tmp_path, monkeypatch):
    """2.2: `endpoint_address` in $FUNCX_HOME/config.py is where workers reach
    the endpoint; the 0.0.1a5 broker options are accepted with a warning."""
    from endpoint.config_file import GLOBAL_TEMPLATE, load

    home = tmp_path / "home"
    monkeypatch.setenv("FUNCX_HOME", str(home))
    (home / "ep").mkdir(parents=True)
    (home / "ep" / "config.py").write_text(
        "from funcx.config import Config\nconfig = Config()\n")
    (home / "config.py").write_text(GLOBAL_TEMPLATE)  # what init writes: changes nothing
    plain = load(home / "ep" / "config.py")
    assert plain.address == "detect" and plain.start_warnings() == []
    (home / "config.py").write_text(textwrap.dedent("""
        import getpass
        from parsl.addresses import address_by_route, address_by_hostname

        global_options = {
            'username': getpass.getuser(),
            'email': 'USER@USERDOMAIN.COM',
            'broker_address': '127.0.0.1',
            'broker_port': 8088,
            'endpoint_address': '127.0.0.1',
        }
        """))
    config = load(home / "ep" / "config.py")
    assert config.address == "127.0.0.1"
    [text] = config.start_warnings()
    assert "broker_address, broker_port ignored" in text
    (home / "ep" / "config.py").write_text(
        "from funcx.config import Config\nconfig = Config(address='0.0.0.0')\n")
    assert load(home / "ep" / "config.py").address == "0.0.0.0"  # the endpoint's own wins


def test_list_shows_the_documented_columns_and_states(service, endpoint, fxc, fresh_name):
    """2.6: "Endpoint Name | Status | Endpoint ID"; the manual's Initialized
    (id None), Active, Inactive in the one set of state words of both CLIs
    (initialized, online, offline); `stop` run twice is harmless (2.5)."""
    name = fresh_name
    r = cli("start", name)  # 2.4: the first start creates the profile, and stops there
    assert r.exit_code == 0, r.output
    assert "Created" in r.stdout and "again" in r.stdout

    def row(text: str, who: str) -> list[str]:
        for line in text.splitlines():
            cells = [c.strip() for c in re.split(r"[│|┃]", line)]
            if who in cells:
                return [c for c in cells if c]
        raise AssertionError(f"{who} not listed:\n{text}")

    r = cli("list")
    assert r.exit_code == 0
    header = row(r.stdout, "Endpoint Name")
    assert header == ["Endpoint Name", "Status", "Endpoint ID"]
    assert row(r.stdout, name) == [name, "initialized", "None"]
    [session_ep] = [e["name"] for e in json.loads(cli("list", "--format", "json").stdout)
                    if e["endpoint_id"] == endpoint]
    assert row(r.stdout, session_ep) == [session_ep, "online", endpoint]  # the id, unwrapped

    r = cli("start", name)
    assert r.exit_code == 0, r.output
    eid = re.search(r"running: (\S+)", r.stdout).group(1)
    assert row(cli("list").stdout, name) == [name, "online", eid]
    assert cli("stop", name).exit_code == 0
    second = cli("stop", name)
    assert second.exit_code == 0 and "was not running" in second.stdout
    assert row(cli("list").stdout, name) == [name, "offline", eid]
    listed = json.loads(cli("list", "--format", "json").stdout)
    assert {"name": name, "status": "offline", "endpoint_id": eid} in listed


# ===================================================== the reference pages
def test_config_reference_page_covers_every_option():
    """docs/endpoint_config.md names every Config option (and each of the
    reference's options with its verdict)."""
    from dataclasses import fields

    from endpoint.config import Config

    page = (Path(__file__).resolve().parents[1] / "docs" / "endpoint_config.md").read_text()
    for f in fields(Config):
        if f.init:
            assert f"`{f.name}`" in page, f.name
    reference = ("provider", "scaling_enabled", "worker_ports", "worker_port_range", "strategy",
                 "max_workers_per_node", "cores_per_worker", "mem_per_worker", "launch_cmd",
                 "worker_mode", "scheduler_mode", "container_type", "prefetch_capacity",
                 "heartbeat_period", "heartbeat_threshold", "poll_period", "working_dir",
                 "worker_debug")
    for name in reference:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}`")
                   or line.startswith(f"| `worker_ports`, `{name}`"))
        assert re.search(r"\| (supported|accepted with a warning)", row), row


def test_funcx_providers_kubernetes_has_the_documented_options():
    import inspect

    from funcx.providers import KubernetesProvider

    params = inspect.signature(KubernetesProvider).parameters
    for name in ("image", "namespace", "nodes_per_block", "init_blocks", "min_blocks",
                 "max_blocks", "max_cpu", "max_mem", "init_cpu", "init_mem", "parallelism",
                 "worker_init", "pod_name", "user_id", "group_id", "run_as_non_root", "secret",
                 "persistent_volumes"):
        assert name in params, name


def test_container_type_shifter_is_warned_about():
    [text] = warnings_of(worker_mode="singularity_reuse", container_type="Shifter")
    assert "container_type='Shifter' is ignored" in text


def test_manager_falls_back_when_working_dir_cannot_be_made(tmp_path):
    """working_dir in the endpoint's directory may not exist on a compute node
    that does not share it: the manager says so and uses a temporary one."""
    from endpoint.curve import CurveKeys
    from endpoint.launch import ManagerLaunch
    from endpoint.manager import Manager

    keys = CurveKeys.load_or_create(tmp_path / "curve")
    made = tmp_path / "made" / "here"
    mgr = Manager(ManagerLaunch(addr="tcp://127.0.0.1:9", workers=1,
                                curve_keys=str(keys.manager_file), working_dir=str(made)))
    try:
        assert mgr.working_dir == str(made) and made.is_dir() and not mgr.own_workdir
    finally:
        mgr.shutdown()
    assert made.is_dir()  # the endpoint's directory is never removed by a manager
    blocked = tmp_path / "file"
    blocked.write_text("")
    mgr = Manager(ManagerLaunch(addr="tcp://127.0.0.1:9", workers=1,
                                curve_keys=str(keys.manager_file),
                                working_dir=str(blocked / "sub")))
    try:
        assert mgr.own_workdir and Path(mgr.working_dir).is_dir()
        assert not mgr.working_dir.startswith(str(blocked))
    finally:
        mgr.shutdown()
    assert not Path(mgr.working_dir).exists()
