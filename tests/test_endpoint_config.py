"""Unit tests of endpoint/config.py and endpoint/config_file.py."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from endpoint.config import WORKER_MODES, Config
from endpoint.config_file import ConfigError, load, write_template


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ep" / "config.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# ---------------------------------------------------------------- template
def test_template_loads(tmp_path):
    path = tmp_path / "myep" / "config.py"
    write_template(path, "myep", workers=3)
    assert "funcx-endpoint restart myep" in path.read_text()
    cfg = load(path)
    assert isinstance(cfg, Config)
    assert cfg.max_workers_per_node == 3
    assert cfg.workers_per_node() == 3
    assert cfg.max_idletime == 120
    assert (cfg.heartbeat_period, cfg.heartbeat_threshold) == (2, 10)
    assert cfg.walltime is None
    assert type(cfg.provider).__name__ == "LocalProvider"
    assert (cfg.provider.init_blocks, cfg.provider.min_blocks, cfg.provider.max_blocks) == (1, 0, 1)


def test_template_default_workers_is_zero(tmp_path):
    path = tmp_path / "e" / "config.py"
    write_template(path, "e")
    cfg = load(path)
    assert cfg.max_workers_per_node == 0
    assert cfg.workers_per_node() >= 1


def test_config_file_may_use_dunder_file(tmp_path):
    path = write(tmp_path, """
        from endpoint.config import Config
        config = Config(working_dir=__file__ + ".d")
        """)
    assert load(path).working_dir == str(path) + ".d"


# ------------------------------------------------------------------ errors
def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "config.py"
    with pytest.raises(ConfigError) as ei:
        load(path)
    assert str(path) in str(ei.value)
    assert "funcx-endpoint configure" in str(ei.value)


def test_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, """
        from endpoint.config import Config

        config = Config(
            max_idletime=10,,
        )
        """)
    with pytest.raises(ConfigError) as ei:
        load(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:4:")
    assert "syntax" in msg.lower()


def test_name_error_names_file_and_line(tmp_path):
    path = write(tmp_path, """
        from endpoint.config import Config

        x = 1
        y = 2
        config = Config(max_idletime=undefined_name)
        """)
    with pytest.raises(ConfigError) as ei:
        load(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:5:")
    assert "NameError" in msg and "undefined_name" in msg


def test_error_in_helper_function_reports_deepest_line_in_file(tmp_path):
    path = write(tmp_path, """
        from endpoint.config import Config

        def helper():
            return {}["missing"]

        config = Config(max_idletime=helper())
        """)
    with pytest.raises(ConfigError) as ei:
        load(path)
    assert str(ei.value).startswith(f"{path}:4: KeyError")


def test_config_validation_error_inside_file(tmp_path):
    path = write(tmp_path, """
        from endpoint.config import Config
        config = Config(worker_mode="bogus")
        """)
    with pytest.raises(ConfigError) as ei:
        load(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}:2: ValueError")
    assert "worker_mode" in msg


def test_config_not_defined(tmp_path):
    path = write(tmp_path, """
        from endpoint.config import Config
        cfg = Config()
        """)
    with pytest.raises(ConfigError) as ei:
        load(path)
    msg = str(ei.value)
    assert str(path) in msg
    assert "config = Config(" in msg
    assert "NoneType" in msg


def test_config_wrong_type(tmp_path):
    path = write(tmp_path, "config = {'provider': None}\n")
    with pytest.raises(ConfigError, match="dict"):
        load(path)


# -------------------------------------------------------------- validation
@pytest.mark.parametrize("mode", WORKER_MODES)
def test_valid_worker_modes(mode):
    assert Config(worker_mode=mode).worker_mode == mode


def test_bad_worker_mode():
    with pytest.raises(ValueError, match="worker_mode"):
        Config(worker_mode="kvm")


@pytest.mark.parametrize("period, threshold", [(2, 2), (5, 1), (1, 0)])
def test_heartbeat_threshold_must_exceed_period(period, threshold):
    with pytest.raises(ValueError, match="heartbeat_threshold"):
        Config(heartbeat_period=period, heartbeat_threshold=threshold)


def test_heartbeat_ok():
    cfg = Config(heartbeat_period=1, heartbeat_threshold=1.5)
    assert cfg.heartbeat_threshold > cfg.heartbeat_period


def test_negative_workers():
    with pytest.raises(ValueError, match="max_workers_per_node"):
        Config(max_workers_per_node=-1)


def test_defaults_come_from_settings(monkeypatch):
    monkeypatch.setenv("FUNCX_HEARTBEAT_PERIOD_S", "0.25")
    monkeypatch.setenv("FUNCX_HEARTBEAT_THRESHOLD_S", "7")
    monkeypatch.setenv("FUNCX_TASK_RETRIES_ON_MANAGER_LOST", "4")
    cfg = Config()
    assert (cfg.heartbeat_period, cfg.heartbeat_threshold) == (0.25, 7.0)
    assert cfg.task_retries_on_manager_lost == 4


def test_workers_per_node_from_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert Config().workers_per_node() == 8
    assert Config(cores_per_worker=2).workers_per_node() == 4
    assert Config(cores_per_worker=16).workers_per_node() == 1
    assert Config(max_workers_per_node=3).workers_per_node() == 3
