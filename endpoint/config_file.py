"""Writing the commented ``config.py`` template and loading it with errors
that name the file and line, not a traceback from deep inside."""
from __future__ import annotations

import traceback
from pathlib import Path

from endpoint.config import Config


class ConfigError(Exception):
    """config.py could not be loaded; the message names file, line and cause."""


def write_template(path: Path, name: str, workers: int = 0, template: str = "local") -> None:
    from endpoint.templates import render

    text = render(name, template, workers)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text)


def load(path: Path) -> Config:
    try:
        source = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; run `funcx-endpoint configure`") from None
    namespace: dict = {"__file__": str(path), "__name__": "funcx_endpoint_config"}
    try:
        code = compile(source, str(path), "exec")
        exec(code, namespace)  # noqa: S102 - the user's own configuration
    except SyntaxError as e:
        raise ConfigError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    except Exception as e:
        line = _line_in(path, e)
        raise ConfigError(f"{path}:{line}: {type(e).__name__}: {e}") from None
    config = namespace.get("config")
    if not isinstance(config, Config):
        raise ConfigError(f"{path}: must define `config = Config(...)` "
                          f"(found {type(config).__name__})")
    # working_dir: the endpoint's directory (the reference's default), never
    # wherever `funcx-endpoint start` happened to run
    config.resolve_working_dir(path.parent)
    return config


def _line_in(path: Path, exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return str(frames[-1].lineno) if frames else "?"
