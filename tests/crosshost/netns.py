"""Hosts on one machine: Linux network namespaces joined by veth pairs.

Each :class:`Host` is a network namespace (its own interfaces, addresses,
routes and ports) with its own ``FUNCX_HOME``; processes are started in it
with ``ip netns exec``.  A :class:`Link` is a veth pair with a /30 subnet;
:meth:`Link.cut` drops everything both ends send (blackhole routes to the
peer on both sides: established TCP connections stay open and resume when
the cut ends, as after a real outage), and :meth:`Link.capture` records the
link with tcpdump.  Addresses exist only inside the namespaces created here.

Needs root, ``ip`` (iproute2) and ``tcpdump``; :func:`missing` says what is
absent so a test can skip with the reason.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def missing() -> str | None:
    """Why this machine cannot build hosts (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("ip", "tcpdump"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (.ci/run installs it)"
    probe = f"fxprobe{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", probe], check=True, capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", probe], check=True, capture_output=True, timeout=10)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        return f"cannot create a network namespace: {getattr(e, 'stderr', e)!r}"
    return None


def _ip(*args: str, ns: str | None = None) -> None:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")


@dataclass
class Host:
    """One emulated machine: a network namespace and a FUNCX_HOME."""

    name: str  #: the role, e.g. "login"
    ns: str  #: the namespace's name
    home: Path
    env: dict[str, str] = field(default_factory=dict)  #: extra environment of its processes

    def environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUNCX_")}
        env.update({"FUNCX_HOME": str(self.home), "PYTHONPATH": str(REPO),
                    "PATH": f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
                    "PYTHONUNBUFFERED": "1", **self.env, **(extra or {})})
        return env

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            timeout: float = 120, check: bool = True, input: str | None = None,
            ) -> subprocess.CompletedProcess:
        """Run ``argv`` on this host and wait for it (output captured as text)."""
        res = subprocess.run(self.argv(argv), env=self.environ(env), capture_output=True,
                             text=True, timeout=timeout, cwd=self.home, input=input)
        if check and res.returncode != 0:
            raise AssertionError(f"[{self.name}] {' '.join(argv)} exited {res.returncode}\n"
                                 f"stdout: {res.stdout[-3000:]}\nstderr: {res.stderr[-3000:]}")
        return res

    def popen(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              **kw) -> subprocess.Popen:
        """Start ``argv`` on this host (its own process group)."""
        return subprocess.Popen(self.argv(argv), env=self.environ(env), cwd=self.home,
                                start_new_session=True, **kw)

    def python(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run([sys.executable, *args], **kw)


@dataclass
class Link:
    """A veth pair between two hosts, with a /30 subnet."""

    a: Host
    b: Host
    a_if: str
    b_if: str
    a_ip: str
    b_ip: str
    name: str

    def ip_of(self, host: Host) -> str:
        return self.a_ip if host is self.a else self.b_ip

    @contextlib.contextmanager
    def cut(self) -> Iterator[None]:
        """No packet crosses the link while inside: each end drops what it
        sends to the other (a blackhole route beats the subnet's route)."""
        _ip("route", "add", "blackhole", f"{self.b_ip}/32", ns=self.a.ns)
        _ip("route", "add", "blackhole", f"{self.a_ip}/32", ns=self.b.ns)
        try:
            yield
        finally:
            _ip("route", "del", "blackhole", f"{self.b_ip}/32", ns=self.a.ns)
            _ip("route", "del", "blackhole", f"{self.a_ip}/32", ns=self.b.ns)

    def capture(self, path: Path) -> Capture:
        """Record every packet on the link (seen from its ``a`` end)."""
        return Capture(self.a, self.a_if, path)


class Capture:
    """tcpdump on one interface, writing a pcap file; started and ready
    (tcpdump says it listens) when the constructor returns.

    ``--immediate-mode``: without it libpcap hands packets over in blocks of
    its memory-mapped ring, and a block not yet handed over when tcpdump is
    stopped is lost (a quiet link's capture came back nearly empty).  In
    immediate mode each ring slot holds one snapshot, so the snapshot length
    is kept to what a (GSO-merged) IPv4 packet can be and the ring is large
    (``-B``, KiB): a full ring drops packets, and a dropped packet is bytes
    the secret search never sees (:meth:`dropped` lets a test require 0)."""

    def __init__(self, host: Host, interface: str, path: Path, timeout: float = 20):
        self.path = path
        self.log = path.with_suffix(".log")
        self._log_f = open(self.log, "wb")
        self.proc = host.popen(["tcpdump", "-i", interface, "--immediate-mode", "-U", "-n",
                                "-B", "65536", "-s", "70000", "-w", str(path)],
                               stdout=subprocess.DEVNULL, stderr=self._log_f)
        deadline = time.monotonic() + timeout
        while b"listening on" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {self.log.read_text(errors='replace')}")
            time.sleep(0.05)

    def stop(self) -> Path:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # tcpdump flushes and exits
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_f.close()
        return self.path

    def dropped(self) -> int:
        """Packets the kernel dropped (the ring was full); -1 if not reported."""
        m = re.search(r"(\d+) packets? dropped by kernel", self.log.read_text(errors="replace"))
        return int(m.group(1)) if m else -1

    def stats(self) -> str:
        """tcpdump's own account (packets captured / received / dropped)."""
        return " ".join(self.log.read_text(errors="replace").split("\n")[1:]).strip()


class Topology:
    """Hosts and links, all removed by :meth:`close`."""

    def __init__(self, root: Path, prefix: str | None = None):
        self.root = root
        self.prefix = prefix or f"fx{os.getpid() % 100000}"
        self.hosts: dict[str, Host] = {}
        self.links: dict[str, Link] = {}

    def host(self, name: str) -> Host:
        ns = f"{self.prefix}-{name}"
        _ip("netns", "add", ns)
        _ip("link", "set", "lo", "up", ns=ns)
        home = self.root / name
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.hosts[name] = h = Host(name, ns, home)
        return h

    def link(self, a: Host, b: Host, subnet: int) -> Link:
        """Join ``a`` (10.77.<subnet>.1) and ``b`` (10.77.<subnet>.2)."""
        n = len(self.links)
        a_if, b_if = f"{self.prefix[-6:]}l{n}a", f"{self.prefix[-6:]}l{n}b"  # <= 15 chars
        _ip("link", "add", a_if, "netns", a.ns, "type", "veth", "peer", "name", b_if, "netns", b.ns)
        a_ip, b_ip = f"10.77.{subnet}.1", f"10.77.{subnet}.2"
        for host, ifname, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
            _ip("addr", "add", f"{ip}/30", "dev", ifname, ns=host.ns)
            _ip("link", "set", ifname, "up", ns=host.ns)
        name = f"{a.name}-{b.name}"
        self.links[name] = link = Link(a, b, a_if, b_if, a_ip, b_ip, name)
        return link

    def close(self) -> None:
        for h in self.hosts.values():
            _kill_namespace_processes(h.ns)
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", h.ns)


def _kill_namespace_processes(ns: str) -> None:
    res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
    for pid in res.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
