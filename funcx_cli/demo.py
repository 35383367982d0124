"""``funcx demo``, the main job end to end: start the embedded service and a
local endpoint (if not already running), register a function, run it with
arguments, print the result, and stop what was started unless asked to keep it
running.  It lives beside the CLI because it starts an endpoint: the service
(``backend/``) never imports the endpoint."""
from __future__ import annotations

import socket
from collections.abc import Callable

from funcx.defaults import setting

DEMO_ENDPOINT = "demo"


def hello(name: str, repeat: int = 1, punctuation: str = "!") -> str:
    """The demo function: runs in a worker process on the endpoint."""
    import os
    import platform

    return f"Hello, {name}{punctuation} " * repeat + f"(from {platform.node()}, pid {os.getpid()})"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def run_demo(say: Callable[[str], None] = print, keep_running: bool = False,
             name: str = "scientist", repeat: int = 2) -> str:
    from backend import control
    from endpoint import daemon
    from endpoint.config_file import write_template
    from endpoint.paths import EndpointDir
    from funcx.sdk.client import FuncXClient

    started_service = started_endpoint = False
    if control.status()["running"]:
        say(f"Using the running service at {control.status()['url']}")
    else:
        host, port = str(setting("SERVICE_HOST")), int(setting("SERVICE_PORT"))
        url = control.start_detached(host, port if _port_free(host, port) else 0)
        started_service = True
        say(f"Started the funcX service at {url}")
    try:
        ep = EndpointDir(DEMO_ENDPOINT)
        if not ep.exists():
            write_template(ep.config_file, DEMO_ENDPOINT, workers=2)
        eid = daemon.saved_id(ep) if daemon.running_pid(ep) else None
        if eid:
            say(f"Using the running endpoint {DEMO_ENDPOINT!r} ({eid})")
        else:
            eid = daemon.start(DEMO_ENDPOINT)
            started_endpoint = True
            say(f"Started endpoint {DEMO_ENDPOINT!r} ({eid})")
        fxc = FuncXClient()
        fid = fxc.register_function(hello, description="the funcX demo function")
        say(f"Registered function hello: {fid}")
        tid = fxc.run(name, endpoint_id=eid, function_id=fid, repeat=repeat)
        say(f"Submitted task {tid}: hello({name!r}, repeat={repeat})")
        fxc.wait([tid], timeout=120)
        result = fxc.get_result(tid)
        say(f"Result: {result}")
        return result
    finally:
        if not keep_running:
            if started_endpoint:
                daemon.stop(DEMO_ENDPOINT)
                say(f"Stopped endpoint {DEMO_ENDPOINT!r}")
            if started_service:
                control.stop()
                say("Stopped the funcX service")
