"""Files under ``$FUNCX_HOME`` shared by the service, the SDK and endpoints:
the running service's record and the local credentials."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from funcx.defaults import funcx_home

RESERVED_NAMES = {"service", "credentials"}  # not usable as endpoint names


def service_dir() -> Path:
    d = funcx_home() / "service"
    d.mkdir(exist_ok=True, mode=0o700)
    return d


def service_record_path() -> Path:
    return service_dir() / "service.json"


def credentials_path() -> Path:
    d = funcx_home() / "credentials"
    d.mkdir(exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    return d / "token.json"


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` readable by its owner only (mode 0600)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def recorded_service_url() -> str | None:
    rec = read_json(funcx_home() / "service" / "service.json")
    return rec.get("url") if rec else None


def stored_token() -> str | None:
    rec = read_json(funcx_home() / "credentials" / "token.json")
    return rec.get("token") if rec else None
