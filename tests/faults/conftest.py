"""Fixtures of the fault suite: each test gets its OWN service and endpoint
(real processes, a private FUNCX_HOME under tmp), never the session's shared
service.  The fault table is printed at the end of the session and, if
``FUNCX_FAULT_REPORT`` names a file, appended to it as JSON lines."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from faultlib import LOAD, ROWS, Fabric, table


@pytest.fixture
def make_fabric(request):
    """``make_fabric(env=..., workers=..., endpoint_options=...)``: a started
    fabric (service + endpoint), stopped and cleaned up after the test."""
    made: list[Fabric] = []

    def make(env: dict | None = None, workers: int = 4, endpoint_options: dict | None = None,
             endpoint: bool = True) -> Fabric:
        # a short path: unix socket names (zmq ipc) have a length limit
        root = Path(tempfile.mkdtemp(prefix="fxf-"))
        fab = Fabric(root, env=env, workers=workers, endpoint_options=endpoint_options)
        made.append(fab)
        fab.start_service(0)
        if endpoint:
            fab.start_endpoint()
        return fab

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for fab in made:
        if failed:
            print(fab.logs())
        fab.close()
        import shutil

        shutil.rmtree(fab.root, ignore_errors=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep


def pytest_terminal_summary(terminalreporter):
    for row in LOAD:
        terminalreporter.write_sep("=", "funcX load test")
        for k, v in row.items():
            terminalreporter.write_line(f"{k}: {v}")
    if ROWS:
        terminalreporter.write_sep("=", "funcX fault table")
        terminalreporter.write_line(table(ROWS))
        for r in ROWS:
            terminalreporter.write_line(f"{r['fault']}: {json.dumps(r['extra'])}")
