"""The manager's launch spec, the endpoint's CurveZMQ key files, the walltime
rule and the owner's limits (pure logic and files; no service needed)."""
from __future__ import annotations

import math
import os
import shlex
import stat
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from endpoint.blocks import Blocks
from endpoint.config import Config
from endpoint.curve import CurveKeys, KeyFileError, ManagerKeys
from endpoint.launch import ManagerLaunch
from endpoint.scheduling import task_walltime
from endpoint.worker_env import WORKER_FUNCX_VARS, worker_environment

opt_float = st.none() | st.floats(min_value=0.001, max_value=1e6, allow_nan=False)
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
text = st.text(st.characters(blacklist_categories=SURROGATES, blacklist_characters="\x00"),
               max_size=30)


@pytest.mark.parametrize("options", ["--", "-", "--x=--", "-- --", "=--"])
def test_an_option_value_that_looks_like_a_flag_round_trips(options):
    """argparse drops a value that is exactly ``--`` (found by the property below)."""
    launch = ManagerLaunch(addr="a", workers=1, curve_keys="--", container_options=options)
    assert ManagerLaunch.from_argv(launch.to_argv()) == launch
    assert ManagerLaunch.from_argv(shlex.split(launch.shell())[3:]) == launch


@settings(max_examples=200, deadline=None)
@given(addr=text.filter(bool), workers=st.integers(1, 1000), keys=text.filter(bool),
       block=text, mid=st.none() | text, prefetch=st.integers(0, 100), walltime=opt_float,
       max_walltime=opt_float, options=text, working_dir=st.none() | text.filter(bool),
       mem=opt_float)
def test_launch_round_trips_through_argv(addr, workers, keys, block, mid, prefetch, walltime,
                                         max_walltime, options, working_dir, mem):
    launch = ManagerLaunch(addr=addr, workers=workers, curve_keys=keys, block_id=block,
                           manager_id=mid, prefetch=prefetch, walltime=walltime,
                           max_walltime=max_walltime, container_options=options,
                           working_dir=working_dir, mem_per_worker=mem)
    assert ManagerLaunch.from_argv(launch.to_argv()) == launch
    # and through the shell, as a provider's submit script runs it
    argv = shlex.split(launch.shell())
    assert argv[1:3] == ["-m", "endpoint.manager"]
    assert ManagerLaunch.from_argv(argv[3:]) == launch


def test_launch_requires_the_key_file():
    with pytest.raises(SystemExit):
        ManagerLaunch.from_argv(["--addr", "tcp://127.0.0.1:1", "--workers", "1"])


def test_keys_are_private_made_once_and_reused(tmp_path):
    d = tmp_path / "run" / "curve"
    keys = CurveKeys.load_or_create(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for f in d.rglob("*"):
        assert stat.S_IMODE(f.stat().st_mode) == (0o700 if f.is_dir() else 0o600), f
    again = CurveKeys.load_or_create(d)
    assert again == keys  # not regenerated on the next start
    mk = ManagerKeys.load(keys.manager_file)
    assert mk.server_public == keys.server_public and mk.public == keys.manager_public
    assert [p.name for p in keys.authorized_dir.glob("*.key")] == ["manager.key"]
    assert mk.public.decode() in (keys.authorized_dir / "manager.key").read_text()
    assert mk.secret.decode() not in repr(mk) and keys.server_secret.decode() not in repr(keys)


def test_a_key_file_others_can_read_is_refused(tmp_path):
    keys = CurveKeys.load_or_create(tmp_path / "curve")
    os.chmod(keys.manager_file, 0o644)
    with pytest.raises(KeyFileError, match="0600") as e:
        ManagerKeys.load(keys.manager_file)
    os.chmod(keys.manager_file, 0o600)
    assert keys.manager_file.read_text().count(ManagerKeys.load(keys.manager_file).secret.decode()) == 1
    assert ManagerKeys.load(keys.manager_file).secret.decode() not in str(e.value)


def test_blocks_command_names_the_key_file_not_the_keys(tmp_path):
    keys = CurveKeys.load_or_create(tmp_path / "run" / "curve")
    config = Config(max_workers_per_node=3, walltime=5, max_walltime=10, mem_per_worker=0.5,
                    worker_init="module load x")
    blocks = Blocks(config, "tcp://127.0.0.1:5555", tmp_path / "run", keys.manager_file)
    command = blocks.manager_command("4")
    first, last = command.split("\n")
    assert first == "module load x"
    launch = ManagerLaunch.from_argv(shlex.split(last)[3:])
    assert launch == blocks.launch("4")
    assert (launch.addr, launch.workers, launch.block_id) == ("tcp://127.0.0.1:5555", 3, "4")
    assert (launch.walltime, launch.max_walltime, launch.mem_per_worker) == (5, 10, 0.5)
    assert launch.curve_keys == str(keys.manager_file)
    mk = ManagerKeys.load(keys.manager_file)
    for k in (mk.secret, mk.public, mk.server_public, keys.server_secret):
        assert k.decode() not in command
    assert stat.S_IMODE(os.stat(blocks.provider.script_dir).st_mode) == 0o700


def test_walltime_rule():
    assert task_walltime({}, None, None) is None
    assert task_walltime({}, 5, None) == 5
    assert task_walltime({"walltime": 2}, 5, None) == 2
    assert task_walltime({"walltime": 1e9}, 5, 60) == 60  # the owner's bound wins
    assert task_walltime({}, None, 60) == 60  # unlimited is bounded too
    for bad in ("abc", 0, -1, True, [1], None, {"a": 1}, math.nan, math.inf):
        assert task_walltime({"walltime": bad}, 5, 60) == 5, bad
    assert task_walltime("not a dict", 5, 60) == 5


@given(spec=st.dictionaries(st.text(max_size=10), st.none() | st.booleans() | st.floats()
                            | st.integers() | st.text(max_size=5), max_size=3),
       default=opt_float, bound=opt_float)
def test_walltime_never_raises_and_never_exceeds_the_bound(spec, default, bound):
    w = task_walltime(spec, default, bound)
    if bound is not None:
        assert w is not None and w <= bound
    if w is not None:
        assert 0 < w < math.inf


def test_worker_environment_is_scrubbed():
    base = {"PATH": "/bin", "FUNCX_HOME": "/h", "FUNCX_SDK_ACCESS_TOKEN": "t",
            "GLOBUS_COMPUTE_CLIENT_SECRET": "s", "funcx_redis_url": "r",
            "FUNCX_MAX_RESULT_BYTES": "10"}
    env = worker_environment(base, {"FUNCX_MANAGER_PID": "1"})
    assert env == {"PATH": "/bin", "FUNCX_MAX_RESULT_BYTES": "10", "FUNCX_MANAGER_PID": "1"}
    assert "FUNCX_HOME" not in WORKER_FUNCX_VARS


def test_config_bounds_walltime():
    assert Config(walltime=5, max_walltime=10).limits() == {"max_walltime": 10.0}
    assert Config(mem_per_worker=2).limits() == {"mem_per_worker": 2.0}
    assert Config().limits() == {}
    with pytest.raises(ValueError, match="exceeds max_walltime"):
        Config(walltime=20, max_walltime=10)
    for bad in (0, -1, "1h", True, math.inf):
        with pytest.raises(ValueError, match="max_walltime"):
            Config(max_walltime=bad)


def test_register_sends_the_owners_limits():
    from endpoint.agent import register

    class Web:  # records the request the agent makes (no service needed)
        def post(self, path, body):
            self.sent = (path, body)
            return {"endpoint_id": "e"}

        put = post

    web = Web()
    register(web, "ep", Config(max_walltime=30, mem_per_worker=1.5), None)
    assert web.sent[0] == "/v3/endpoints"
    assert web.sent[1]["limits"] == {"max_walltime": 30.0, "mem_per_worker": 1.5}
    register(web, "ep", Config(), "e")
    assert web.sent == ("/v3/endpoints/e", {**web.sent[1], "limits": {}})


def test_hand_started_launch_round_trips_as_a_switch():
    from endpoint.launch import ManagerLaunch

    hand = ManagerLaunch(addr="tcp://h:1", workers=2, curve_keys="/k", hand_started=True,
                         reconnect_max=5.0)
    argv = hand.to_argv()
    assert "--hand-started" in argv and "True" not in argv
    assert ManagerLaunch.from_argv(argv) == hand
    block = ManagerLaunch(addr="tcp://h:1", workers=2, curve_keys="/k")
    assert "--hand-started" not in block.to_argv()
    assert ManagerLaunch.from_argv(block.to_argv()).hand_started is False
