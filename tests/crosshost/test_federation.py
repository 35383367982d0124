"""Federation across hosts: laptop -> service host -> login node -> compute
node, each its own network namespace, over HTTPS, Redis over TLS and
CurveZMQ, with the wire captured on every link.

    laptop ──(HTTPS)── svc ──(HTTPS, rediss)── login ──(CurveZMQ)── node
                        │ (rediss)
                       svc2 ──(HTTPS)── laptop

* ``svc`` runs ``funcx service start --host 0.0.0.0`` with certificates from
  ``funcx service tls-init``; its embedded Redis (Debian's redis-server,
  built with TLS) serves endpoints on a TLS port;
* ``login`` runs the endpoint agent (``funcx-endpoint start``); its blocks
  run on ``node`` (a launcher that enters the node's namespace, as a batch
  scheduler would put them on a compute node);
* ``svc2`` is a second service host (web + ingester) on ``svc``'s Redis;
* the laptop gets the admin's token file and CA, and uses the SDK.

Each link is cut for 30 s in the middle of a batch; every task still
completes, and runs, exactly once.  Then the captures are searched for every
secret that crossed: none shows in clear.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.crosshost import laptop as laptop_driver
from tests.crosshost.netns import Host, Link, Topology, missing
from tests.crosshost.wire import leaks, read_pcap

PORT = 8443
CUT_S = 30.0
CONFIG = '''
import shlex

from parsl.launchers import SimpleLauncher
from parsl.providers import LocalProvider

from endpoint.config import Config


class OnComputeNode(SimpleLauncher):
    """Start the block on the compute node (network namespace {node!r}),
    as a batch scheduler starts a job on a node."""

    def __call__(self, command, tasks_per_node, nodes_per_block, *rest):
        return "ip netns exec {node} bash -c " + shlex.quote(command)


config = Config(
    provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1,
                           launcher=OnComputeNode()),
    address="{address}",      # the login node's address on the compute network
    max_workers_per_node=4,
    public=True,              # the site's endpoint: its users (alice) submit to it
)
'''


def _fail_or_skip(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the cross-host suite cannot run in CI: {why}")
    pytest.skip(why)


class Fabric:
    """The hosts, links, captures and what the tests need to know."""

    def __init__(self, root: Path):
        self.root = root
        self.topo = Topology(root)
        t = self.topo
        self.laptop, self.svc, self.login, self.node, self.svc2 = (
            t.host(n) for n in ("laptop", "svc", "login", "node", "svc2"))
        self.l_web = t.link(self.svc, self.laptop, 1)  # svc 10.77.1.1, laptop .2
        self.l_ep = t.link(self.svc, self.login, 2)  # svc 10.77.2.1, login .2
        self.l_node = t.link(self.login, self.node, 3)  # login 10.77.3.1, node .2
        self.l_tier = t.link(self.svc, self.svc2, 4)  # svc 10.77.4.1, svc2 .2
        self.l_web2 = t.link(self.svc2, self.laptop, 5)  # svc2 10.77.5.1, laptop .2
        self.captures = {link.name: link.capture(root / f"{link.name}.pcap")
                         for link in t.links.values()}
        self.marker = f"fx-arg-marker-{secrets.token_hex(8)}"
        self.runs = root / "runs"  # one file per task, a byte per execution
        self.runs.mkdir()
        self.secrets: dict[str, str] = {}
        self.eid = ""

    def url(self, link: Link, host: Host) -> str:
        return f"https://{link.ip_of(host)}:{PORT}"

    def close(self) -> None:
        hand = getattr(self, "hand", None)
        if hand is not None and hand.poll() is None:
            hand.terminate()
            hand.wait(30)
        for h in (self.login, self.svc2, self.svc):
            for argv in (["funcx-endpoint", "stop", "fed"], ["funcx", "service", "stop"]):
                try:
                    h.run(argv, check=False, timeout=60)
                except subprocess.TimeoutExpired:
                    pass
        for cap in self.captures.values():
            cap.stop()
        self.topo.close()


def _control_leak(fabric: Fabric) -> str:
    """Send a marker in clear (base64 inside JSON) across the laptop link, so
    the wire test can show its search finds what does cross in clear."""
    marker = f"fx-control-{secrets.token_hex(8)}"
    server = fabric.svc.popen([sys.executable, "-c", (
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        f"s.bind(('{fabric.l_web.ip_of(fabric.svc)}', 9999)); s.listen(1); print('up', flush=True);"
        "c, _ = s.accept(); c.recv(65536); c.close()")], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stdout.readline().strip() == "up"
    ip = fabric.l_web.ip_of(fabric.svc)
    fabric.laptop.python("-c", (
        f"import base64, json, socket; s = socket.create_connection(('{ip}', 9999));"
        f"s.sendall(json.dumps({{'p': base64.b64encode(b'..{marker}..').decode()}}).encode())"
    ))
    server.wait(20)
    return marker


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    why = missing() or (None if shutil.which("redis-server") else
                        "Debian's redis-server (TLS-capable) is not installed")
    if why:
        _fail_or_skip(why)
    f = Fabric(tmp_path_factory.mktemp("hosts"))
    try:
        f.secrets["control"] = _control_leak(f)
        _start_service(f)
        _hand_over(f)
        _start_endpoint(f)
        yield f
    finally:
        f.close()


def _start_service(f: Fabric) -> None:
    svc = f.svc
    hosts = [f.l_web.ip_of(svc), f.l_ep.ip_of(svc), f.l_tier.ip_of(svc), f.l_web2.ip_of(f.svc2)]
    svc.run(["funcx", "service", "tls-init", *[a for h in hosts for a in ("--host", h)]])
    # endpoints reach Redis through the address on their network
    svc.env["FUNCX_REDIS_PUBLIC_HOST"] = f.l_ep.ip_of(svc)
    out = svc.run(["funcx", "service", "start", "--host", "0.0.0.0", "--port", str(PORT),
                   "--detach"], timeout=180)
    assert out.stdout.strip().startswith("https://"), out.stdout
    f.tls = svc.home / "service" / "tls"
    f.ca = f.root / "ca.pem"  # what the admin hands out: the CA, not the key
    shutil.copy(f.tls / "ca.pem", f.ca)
    creds = json.loads((svc.home / "credentials" / "token.json").read_text())
    f.secrets["token"] = creds["token"]


def _hand_over(f: Fabric) -> None:
    """Token files and the CA reach the login node (the admin's own
    credentials file: the admin runs the site's endpoint) and the laptop (a
    user the admin creates for the scientist, alice)."""
    alice = f.svc.run(["funcx", "admin", "user", "add", "alice", "--format", "json"]).stdout
    f.secrets["alice_token"] = json.loads(alice)["token"]
    (f.root / "alice.json").write_text(alice)
    for host, link, given in ((f.login, f.l_ep, f.svc.home / "credentials" / "token.json"),
                              (f.laptop, f.l_web, f.root / "alice.json")):
        host.env.update({"FUNCX_SERVICE_ADDRESS": f.url(link, f.svc),
                         "FUNCX_CA_BUNDLE": str(f.ca)})
        token_file = host.home / "from-admin.json"
        shutil.copy(given, token_file)
        out = host.run(["funcx", "login", "--token-file", str(token_file)])
        assert f.secrets["token"] not in out.stdout + out.stderr
        assert f.secrets["alice_token"] not in out.stdout + out.stderr
    f.laptop.env.update({"FUNCX_HTTP_TIMEOUT_S": "15", "FUNCX_HTTP_RETRY_S": "120"})


def _start_endpoint(f: Fabric) -> None:
    login = f.login
    login.run(["funcx-endpoint", "configure", "fed"])
    (login.home / "fed" / "config.py").write_text(CONFIG.format(
        node=f.node.ns, address=f.l_node.ip_of(login)))
    out = login.run(["funcx-endpoint", "start", "fed"], timeout=120)
    m = re.search(r"running: ([0-9a-f-]{36})", out.stdout)
    assert m, out.stdout + out.stderr
    f.eid = m.group(1)
    # and one manager started by hand on the compute node, as its help says
    cmd = login.run(["funcx-endpoint", "manager-command", "fed", "--workers", "2"]).stdout
    argv = shlex.split(cmd.strip().splitlines()[-1])
    assert argv[:2] == ["funcx-endpoint", "manager"] and f.l_node.ip_of(login) in cmd, cmd
    f.hand_log = open(f.root / "hand-manager.log", "wb")
    f.hand = f.node.popen(argv, stdout=f.hand_log, stderr=subprocess.STDOUT)


def _runs(f: Fabric, ids: range) -> dict[int, int]:
    """Executions of each task, from the files the tasks wrote."""
    out = {}
    for i in ids:
        p = f.runs / str(i)
        out[i] = len(p.read_text()) if p.exists() else 0
    return out


def test_register_run_and_executor_from_the_laptop(fabric):
    out = fabric.laptop.python("-m", "tests.crosshost.laptop", "basic", fabric.eid,
                               fabric.marker, str(fabric.runs), timeout=300)
    ev = json.loads(out.stdout.strip().splitlines()[-1])
    assert ev["run"]["ok"] == 1, ev
    assert ev["executor"] is True, ev


@pytest.mark.parametrize("link,n,offset", [
    ("svc-laptop", 500, 10_000),  # the scientist's own link
    ("svc-login", 200, 20_000),  # the endpoint's HTTPS and Redis
    ("login-node", 200, 30_000),  # the managers' CurveZMQ
])
def test_a_30s_cut_mid_batch_loses_and_duplicates_nothing(fabric, link, n, offset):
    cut = fabric.topo.links[link]
    proc = fabric.laptop.popen(
        [sys.executable, "-m", "tests.crosshost.laptop", "batch", fabric.eid, str(n), "0.1",
         fabric.marker, str(fabric.runs), str(offset)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events, was_cut = [], False
    assert proc.stdout is not None
    for line in proc.stdout:
        ev = json.loads(line)
        events.append(ev)
        if ev["event"] == "progress" and not was_cut and ev["done"] >= n // 5:
            with cut.cut():  # mid-batch: a fifth done
                was_cut = True
                time.sleep(CUT_S)  # the outage's length, not a synchronisation
        if ev["event"] == "done":
            break
    rc = proc.wait(300)
    assert was_cut, events[-5:]
    done = events[-1]
    assert done["event"] == "done", (events[-5:], proc.stderr.read() if proc.stderr else "")
    assert rc == 0
    assert done["ok"] == n, done
    runs = _runs(fabric, range(offset, offset + n))
    assert [i for i, k in runs.items() if k != 1] == [], "tasks run other than once"


def test_the_hand_started_manager_served_and_survived_the_cuts(fabric):
    """After the three cuts, the manager started by hand on the node still
    runs (it reconnected instead of exiting) and is registered again."""
    assert fabric.hand.poll() is None, (fabric.root / "hand-manager.log").read_text()[-2000:]
    deadline = time.monotonic() + 60
    while True:  # the endpoint's own view, refreshed by each heartbeat
        st = json.loads(fabric.login.run(["funcx-endpoint", "status", "fed", "--format",
                                          "json"]).stdout)["service_status"]
        blocks = sorted(m["block_id"] for m in st["details"].get("manager_details", []))
        if (len(blocks) == 2 and "hand" in blocks) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(blocks) == 2 and "hand" in blocks, st  # the node's block and the hand-started one


def test_two_service_hosts_share_one_redis(fabric):
    """svc2 runs web + ingester on svc's Redis (over TLS, with svc's
    password); the laptop submits through each host and reads through the
    other; every task completes once."""
    f, svc2 = fabric, fabric.svc2
    for name in ("server.pem", "server.key"):
        shutil.copy(f.tls / name, svc2.home / name)
    redis_pw, tls_port = _service_redis(f)
    f.secrets["redis_password"] = redis_pw
    svc2.env.update({
        "FUNCX_REDIS_URL": f"rediss://:{redis_pw}@{f.l_tier.ip_of(f.svc)}:{tls_port}/0",
        "FUNCX_REDIS_CA": str(f.ca),
        "FUNCX_REDIS_PUBLIC_HOST": f.l_ep.ip_of(f.svc),
    })
    out = svc2.run(["funcx", "service", "start", "--host", f.l_web2.ip_of(svc2),
                    "--port", str(PORT), "--tls-cert", str(svc2.home / "server.pem"),
                    "--tls-key", str(svc2.home / "server.key"), "--tls-ca", str(f.ca),
                    "--detach"], timeout=180)
    assert out.stdout.strip().startswith("https://"), out.stdout
    n = 100
    res = f.laptop.python("-m", "tests.crosshost.laptop", "two-services", f.eid,
                          f.url(f.l_web, f.svc), f.url(f.l_web2, svc2), str(n), f.marker,
                          str(f.runs), timeout=300)
    ev = json.loads(res.stdout.strip().splitlines()[-1])
    assert ev["ok"] == [n, n], ev
    assert ev["used"] == [f.url(f.l_web, f.svc), f.url(f.l_web2, svc2)], ev
    assert min(ev["requests"]) >= 3, ev  # each host took a submit and result reads
    st = json.loads(svc2.run(["funcx", "service", "status", "--format", "json"]).stdout)
    assert st["responding"] and {c["name"] for c in st["components"]} >= {"web", "ingester"}


def _service_redis(f: Fabric) -> tuple[str, int]:
    """svc's embedded Redis password and TLS port, as its admin reads them."""
    rec = json.loads((f.svc.home / "service" / "service.json").read_text())
    tls_port = int(rec["redis"]["tls_port"])
    password = (f.svc.home / "service" / "redis" / "secret").read_text().split()[0]
    return password, tls_port


def test_no_secret_crosses_any_link_in_clear(fabric):
    """Stop the captures and search every link for the token, the Redis
    passwords, the function's code, its argument and its result."""
    f = fabric
    # an endpoint registration made from the login node: its answer holds a
    # Redis ACL password, which must cross svc-login encrypted
    reg = f.login.python("-c", (
        "from funcx import FuncXClient; import sys;"
        "a = FuncXClient().register_endpoint('wire-probe');"
        "sys.stdout.write(a['redis_url'])"))
    acl_pw = re.search(r"//[^:]+:([^@]+)@", reg.stdout).group(1)
    assert len(acl_pw) >= 16
    wires = {name: read_pcap(cap.stop()) for name, cap in f.captures.items()}
    for name, w in wires.items():
        assert w.total > 10_000, (f"{name}: the capture holds {w.total} bytes: nothing recorded? "
                                  f"tcpdump: {f.captures[name].stats()}")
        assert f.captures[name].dropped() == 0, f"{name}: tcpdump: {f.captures[name].stats()}"
    # the search finds what does cross in clear (the control sent before the service started)
    assert leaks(wires["svc-laptop"], f.secrets["control"])
    # what crossed: HTTPS and rediss (TLS records) and CurveZMQ (its greeting names CURVE)
    assert wires["svc-laptop"].find(b"\x17\x03\x03"), "no TLS application data on svc-laptop"
    assert wires["svc-login"].find(b"\x17\x03\x03"), "no TLS application data on svc-login"
    assert wires["login-node"].find(b"CURVE"), "no CurveZMQ handshake on login-node"
    assert not wires["login-node"].find(b"NULL\x00\x00"), "a ZeroMQ NULL-mechanism connection"
    secrets_ = {
        "admin's token": f.secrets["token"],
        "alice's token": f.secrets["alice_token"],
        "redis ACL password": acl_pw,
        "service Redis password": f.secrets.get("redis_password", ""),
        "function source": laptop_driver.SOURCE_MARKER,
        "argument": f.marker,
        "result": f.marker[::-1],
    }
    found = {(what, name): [str(flow) for _, flow in leaks(w, value)][:3]
             for what, value in secrets_.items() if value
             for name, w in wires.items() if leaks(w, value)}
    assert found == {}
    # no Redis command in clear either (the agent's AUTH carries its password)
    for name, w in wires.items():
        for cmd in (b"AUTH", b"XREADGROUP", b"HELLO"):
            assert not w.find(b"\r\n" + cmd + b"\r\n"), f"{name}: Redis {cmd!r} in clear"
