"""The security suite (tests/security/): one test per attack class, each
proving the attack fails and that another tenant's work completes while it
runs.  Every test here is marked ``security``; ``make test`` leaves this
folder out and CI runs it as its own bounded step (``make test-security``)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.security)
