"""The audit log of a multi-user endpoint: one JSON line per task and per
refusal — which identity, mapped to which account (uid), ran which task in
which child, when.  ``<endpoint dir>/audit.log``, 0600, append-only."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

FILE = "audit.log"


class AuditLog:
    """Appends records; each line is written with one ``write`` (O_APPEND)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(self._fd, 0o600)

    def record(self, event: str, **fields: Any) -> None:
        """One line: ``{"t", "event", ...fields}`` (event: dispatched, refused,
        child_started, child_stopped)."""
        line = json.dumps({"t": time.time(), "event": event, **fields}, sort_keys=True) + "\n"
        with self._lock:
            os.write(self._fd, line.encode())

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)


def read(path: Path) -> list[dict]:
    """Every record (a torn last line skipped)."""
    out = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
