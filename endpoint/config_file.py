"""Writing the commented ``config.py`` template and loading it with errors
that name the file and line, not a traceback from deep inside."""
from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import Any

from endpoint.config import Config

#: ``$FUNCX_HOME/config.py``: the global options of the funcX manual (2.2)
GLOBAL_FILE = "config.py"
GLOBAL_TEMPLATE = '''"""funcX global options, read by every endpoint under this directory when
it starts (the funcX manual, "Configuring funcX").

- endpoint_address: where managers (the workers) reach this host, for each
  endpoint whose own config leaves `address` at its default; e.g.
      from parsl.addresses import address_by_hostname
      'endpoint_address': address_by_hostname(),
- broker_address, broker_port: the local broker of funcX 0.0.1a5.  There is
  none here (the service hands each endpoint its Redis): ignored, with a warning.
- username, email: for your own reference.
"""
import getpass

global_options = {
    'username': getpass.getuser(),
    'email': 'USER@USERDOMAIN.COM',
    # 'endpoint_address': address_by_hostname(),
}
'''


class ConfigError(Exception):
    """config.py could not be loaded; the message names file, line and cause."""


def write_template(path: Path, name: str, workers: int = 0, template: str = "local") -> None:
    from endpoint.templates import render

    text = render(name, template, workers)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text)


def write_global_template(home: Path) -> bool:
    """Write ``$FUNCX_HOME/config.py`` unless it exists; True if written."""
    path = home / GLOBAL_FILE
    if path.exists():
        return False
    path.write_text(GLOBAL_TEMPLATE)
    return True


def load_global(home: Path) -> dict[str, Any]:
    """``global_options`` of ``$FUNCX_HOME/config.py`` ({} without one)."""
    path = home / GLOBAL_FILE
    if not path.is_file():
        return {}
    namespace = _exec(path)
    options = namespace.get("global_options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"{path}: global_options must be a dict "
                          f"(found {type(options).__name__})")
    return options


def apply_global(config: Config, options: dict[str, Any], default_address: str) -> None:
    """Apply the global options to an endpoint's ``config``."""
    address = options.get("endpoint_address")
    if address is not None:
        if not isinstance(address, str) or not address.strip():
            raise ConfigError(f"global_options['endpoint_address'] must be an address or "
                              f"host name, not {address!r}")
        if config.address == default_address:  # the endpoint's own setting wins
            config.address = address
    broker = sorted(k for k in ("broker_address", "broker_port") if k in options)
    if broker:
        config.add_warning(f"global option(s) {', '.join(broker)} ignored: there is no local "
                           f"broker here (the service hands the endpoint its Redis)")
    unknown = sorted(set(options) - {"endpoint_address", "broker_address", "broker_port",
                                     "username", "email"})
    if unknown:
        config.add_warning(f"global option(s) {', '.join(unknown)} not known; ignored")


def _exec(path: Path) -> dict:
    source = path.read_text()
    namespace: dict = {"__file__": str(path), "__name__": "funcx_endpoint_config"}
    try:
        code = compile(source, str(path), "exec")
        exec(code, namespace)  # noqa: S102 - the user's own configuration
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        line = _line_in(path, e)
        raise ConfigError(f"{path}:{line}: {type(e).__name__}: {e}") from None
    return namespace


def load(path: Path) -> Config:
    try:
        namespace = _exec(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; run `funcx-endpoint configure`") from None
    config = namespace.get("config")
    if not isinstance(config, Config):
        raise ConfigError(f"{path}: must define `config = Config(...)` "
                          f"(found {type(config).__name__})")
    # working_dir: the endpoint's directory (the reference's default), never
    # wherever `funcx-endpoint start` happened to run
    config.resolve_working_dir(path.parent)
    # an endpoint of $FUNCX_HOME also reads the global options beside it
    from funcx.defaults import funcx_home, setting

    home = funcx_home()
    if os.path.realpath(path.parent.parent) == os.path.realpath(home):
        apply_global(config, load_global(home), str(setting("INTERCHANGE_ADDRESS")))
    return config


def _line_in(path: Path, exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return str(frames[-1].lineno) if frames else "?"
