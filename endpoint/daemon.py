"""Start, stop and inspect endpoint daemons: pid files (stale ones detected),
the endpoint id kept across restarts, and the ready handshake.

``start`` spawns ``python -m endpoint.daemon NAME`` in a new session and
waits on a pipe until the agent says it is registered and running (or why
it is not); no polling.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import psutil

from endpoint.blocks import block_record_file, read_block_records
from endpoint.config_file import ConfigError, load
from endpoint.paths import EndpointDir, all_endpoint_dirs
from funcx.home import read_json, write_private_json
from funcx.lifecycle import ProcessRecord, become_subreaper, end_tree

log = logging.getLogger("funcx.daemon")


class EndpointError(RuntimeError):
    """A clear, user-facing failure of an endpoint command."""


def saved_id(ep: EndpointDir) -> str | None:
    rec = read_json(ep.id_file)
    return rec.get("endpoint_id") if rec else None


def daemon_record(ep: EndpointDir) -> ProcessRecord | None:
    rec = read_json(ep.record_file)
    return ProcessRecord.from_dict(rec) if isinstance(rec, dict) else None


def running_pid(ep: EndpointDir) -> int | None:
    """The agent's pid, or None; a stale pid file (or record) is removed.  The
    record (pid and start time) decides when there is one: a pid reused by
    another process after a crash is not the daemon."""
    rec = daemon_record(ep)
    try:
        pid = rec.pid if rec else int(ep.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        proc = rec.process() if rec else psutil.Process(pid)
        if proc is not None and proc.status() != psutil.STATUS_ZOMBIE \
                and "endpoint.daemon" in " ".join(proc.cmdline()):
            return pid
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    ep.pid_file.unlink(missing_ok=True)
    ep.record_file.unlink(missing_ok=True)
    return None


def end_predecessor(ep: EndpointDir) -> list[int]:
    """End what a dead daemon of this endpoint left: the process trees of the
    blocks it recorded (managers and their workers), each named by pid and
    start time.  Returns the pids of the blocks ended."""
    ended = []
    for rec in read_block_records(ep.run_dir):
        proc = rec.process()
        if proc is None:
            continue
        try:
            tree = len(proc.children(recursive=True)) + 1
        except psutil.NoSuchProcess:
            continue
        log.warning("ending block process %d (%d processes) left by a dead daemon",
                    rec.pid, tree)
        end_tree(proc)
        ended.append(rec.pid)
    block_record_file(ep.run_dir).unlink(missing_ok=True)
    return ended


def status_of(ep: EndpointDir) -> str:
    if running_pid(ep):
        return "Active"
    return "Inactive" if saved_id(ep) else "Initialized"


def list_endpoints() -> list[dict]:
    return [{"name": ep.name, "status": status_of(ep), "endpoint_id": saved_id(ep),
             **children_of(ep)} for ep in all_endpoint_dirs()]


def children_of(ep: EndpointDir) -> dict:
    """``{"multi_user": True, "children": [...]}`` for a multi-user endpoint
    (its running children, as its router last wrote them), else {}."""
    from endpoint.multiuser import site_config
    from endpoint.multiuser.router import CHILDREN_FILE

    if not site_config.is_multi_user(ep.path):
        return {}
    children: object = None
    if running_pid(ep):
        try:
            children = json.loads((ep.path / "run" / CHILDREN_FILE).read_text())
        except (OSError, ValueError):
            children = None
    return {"multi_user": True, "children": children if isinstance(children, list) else []}


def start(name: str, timeout: float = 60.0) -> str:
    """Start the daemon of endpoint ``name``; return its endpoint id."""
    ep = EndpointDir(name)
    if not ep.exists():
        raise EndpointError(f"endpoint {name!r} is not configured; run `funcx-endpoint configure {name}`")
    pid = running_pid(ep)
    if pid:
        raise EndpointError(f"endpoint {name!r} is already running (pid {pid})")
    load(ep.config_file)  # fail here, with file and line, not in the daemon
    read_fd, write_fd = os.pipe()
    with open(ep.log_file, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "endpoint.daemon", name, str(write_fd)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        line = pipe.readline().strip()  # the daemon writes one line, or dies (EOF)
    if line.startswith("ok "):
        return line[3:]
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    raise EndpointError(line[6:] if line.startswith("error ") else
                        f"endpoint {name!r} exited during start (status {proc.returncode}); "
                        f"see {ep.log_file}")


def stop(name: str, timeout: float = 30.0) -> bool:
    """Stop endpoint ``name``; False if it was not running."""
    ep = EndpointDir(name)
    pid = running_pid(ep)
    if pid is None:
        return False
    proc = psutil.Process(pid)
    proc.send_signal(signal.SIGTERM)
    if not _ended(proc, timeout):
        proc.kill()
        _ended(proc, 5)
    ep.pid_file.unlink(missing_ok=True)
    ep.record_file.unlink(missing_ok=True)
    return True


def _ended(proc: psutil.Process, timeout: float) -> bool:
    """Whether ``proc`` ended within ``timeout`` s.  A zombie has ended: its
    parent (e.g. a program that called :func:`start` in-process and is still
    running) reaps it, not us, and waiting for it to vanish would time out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc.wait(min(0.2, max(0.0, deadline - time.monotonic())))
            return True
        except psutil.TimeoutExpired:
            pass
        except psutil.NoSuchProcess:
            return True
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False


# ---------------------------------------------------------------- the daemon
def run_daemon(name: str, ready_fd: int | None) -> int:
    """Body of the daemon process: register, run, report readiness on the pipe."""
    from endpoint import redis_link
    from endpoint.agent import Agent, install_signal_handlers, register
    from funcx.defaults import setting
    from funcx.errors import FuncxError
    from funcx.sdk.login import default_login_manager
    from funcx.sdk.service_address import resolve_service_address
    from funcx.sdk.web_client import WebClient

    ep = EndpointDir(name)
    ready = os.fdopen(ready_fd, "w") if ready_fd is not None else None

    def say(text: str) -> None:
        if ready is not None:
            ready.write(text + "\n")
            ready.flush()

    try:
        config = load(ep.config_file)
    except ConfigError as e:
        say(f"error {e}")
        return 1
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # blocks a LocalProvider starts in a background shell stay in our tree
    become_subreaper()
    other = running_pid(ep)
    if other is not None and other != os.getpid():
        say(f"error endpoint {name!r} is already running (pid {other})")
        return 1
    ended = end_predecessor(ep)  # a dead predecessor's managers and workers
    if ended:
        log.warning("ended %d block(s) left by a dead daemon: %s", len(ended), ended)
    me = ProcessRecord.of(os.getpid())
    write_private_json(ep.record_file, me.to_dict())
    ep.pid_file.write_text(str(os.getpid()))
    step = "registering with the service"
    agent = None
    try:
        address = resolve_service_address()
        # FUNCX_SDK_CLIENT_ID / FUNCX_SDK_CLIENT_SECRET, when set, take priority
        # over the stored token: the endpoint is registered under the client's
        # identity (the Globus Compute guide's "Client Credentials with Clients")
        web = WebClient(address, default_login_manager(address).get_token)
        step = "reading the multi-user settings"
        site = multi_user_site(ep)  # None: a single-user endpoint
        step = "registering with the service"
        info = register(web, name, config, saved_id(ep), site.published() if site else None)
        # the Redis the service hands out must answer from here (within
        # AGENT_REDIS_CHECK_S), else start fails naming host:port, not "running"
        step = "connecting to the service's Redis"
        redis_link.check(info, ep.run_dir, float(setting("AGENT_REDIS_CHECK_S")))
        step = "binding the interchange"
        if site is None:
            agent = Agent(name, config, web, ep.run_dir, saved_id(ep), info)
        else:
            from endpoint.multiuser.parent import MultiUserAgent

            agent = MultiUserAgent(name, config, web, ep.run_dir, saved_id(ep), info, site)
        write_private_json(ep.id_file, {"endpoint_id": agent.endpoint_id, "name": name,
                                        "registered_at": time.time()})
        install_signal_handlers(agent)
        step = "submitting the first block to the provider"
        agent.start()
        wanted = max(agent.blocks.init_blocks, agent.blocks.min_blocks)
        if wanted and not agent.blocks.jobs:
            # a provider that fails at once is misconfigured (e.g. `sbatch: not
            # found`): say so now; later failures are retried with back-off
            raise FuncxError(agent.blocks.last_error or
                             f"the provider ({type(config.provider).__name__}) "
                             f"started none of the {wanted} initial block(s)")
        step = "starting the interchange"
        if not all(t.is_alive() for t in agent.threads):
            dead = [t.name for t in agent.threads if not t.is_alive()]
            raise FuncxError(f"thread(s) {', '.join(dead)} died at start")
    except Exception as e:  # noqa: BLE001 - every failure is reported on the pipe
        log.exception("endpoint %s failed while %s", name, step)
        text = str(e) if isinstance(e, (ConfigError, FuncxError)) else f"{type(e).__name__}: {e}"
        say(f"error endpoint {name!r} failed while {step}: {text} (log: {ep.log_file})")
        if agent is not None:
            try:
                agent.stop()
            except Exception:  # noqa: BLE001 - already failing
                log.exception("stopping the failed agent")
        ep.pid_file.unlink(missing_ok=True)
        ep.record_file.unlink(missing_ok=True)
        return 1
    say(f"ok {agent.endpoint_id}")
    if ready is not None:
        ready.close()
    try:
        agent.run_until_stopped()
    finally:
        agent.stop()
        ep.pid_file.unlink(missing_ok=True)
        ep.record_file.unlink(missing_ok=True)
    return 0


def multi_user_site(ep: EndpointDir):
    """The parent's settings when ``ep`` is a multi-user endpoint, else None
    (endpoint.multiuser.site_config; its errors name the file)."""
    from endpoint.multiuser import site_config

    if not site_config.is_multi_user(ep.path):
        return None
    try:
        return site_config.load(ep.path)
    except site_config.SiteConfigError as e:
        raise ConfigError(str(e)) from None


def endpoint_info(name: str) -> dict:
    ep = EndpointDir(name)
    return {"name": name, "status": status_of(ep), "endpoint_id": saved_id(ep),
            "pid": running_pid(ep), "directory": str(ep.path), "log": str(ep.log_file),
            **children_of(ep)}


if __name__ == "__main__":
    sys.exit(run_daemon(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None))
