"""An endpoint's directory ``$FUNCX_HOME/<name>/``: config, id, pid, logs, keys."""
from __future__ import annotations

import re
from pathlib import Path

from funcx.defaults import funcx_home
from funcx.home import RESERVED_NAMES

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class BadEndpointName(ValueError):
    pass


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or name in RESERVED_NAMES:
        raise BadEndpointName(
            f"invalid endpoint name {name!r}: use letters, digits, '.', '_' or '-' "
            f"(not {', '.join(sorted(RESERVED_NAMES))})")
    return name


class EndpointDir:
    def __init__(self, name: str):
        self.name = check_name(name)
        self.path = funcx_home() / name

    @property
    def config_file(self) -> Path:
        return self.path / "config.py"

    @property
    def id_file(self) -> Path:
        return self.path / "endpoint.json"

    @property
    def pid_file(self) -> Path:
        return self.path / "daemon.pid"

    @property
    def record_file(self) -> Path:
        """The running daemon's process record: pid *and* start time (a pid
        alone may be reused after a crash); ``daemon.pid`` keeps the bare pid."""
        return self.path / "daemon.json"

    @property
    def log_file(self) -> Path:
        return self.path / "endpoint.log"

    @property
    def run_dir(self) -> Path:
        d = self.path / "run"
        d.mkdir(exist_ok=True, mode=0o700)
        return d

    def exists(self) -> bool:
        return self.config_file.exists()


def all_endpoint_dirs() -> list[EndpointDir]:
    out = []
    for p in sorted(funcx_home().iterdir()):
        if p.is_dir() and (p / "config.py").exists() and NAME_RE.match(p.name) \
                and p.name not in RESERVED_NAMES:
            out.append(EndpointDir(p.name))
    return out
