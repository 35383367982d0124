"""The cross-host suite (tests/crosshost/): hosts emulated with network
namespaces (see netns.py).  Every test here is marked ``crosshost`` and
``slow``; ``make test`` leaves it out and CI runs it as its own bounded step
(``make test-crosshost``), after installing what it needs (redis-server with
TLS, tcpdump)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.crosshost)
            item.add_marker(pytest.mark.slow)
