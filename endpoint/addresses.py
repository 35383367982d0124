"""Which address the interchange binds, and which one managers are told.

Managers of a remote provider (Slurm, PBS, Kubernetes...) run on other hosts:
they must be handed an address that reaches this host, never ``127.0.0.1``.
The configured ``address`` means:

* ``"detect"`` (the default): ``127.0.0.1`` for a LocalProvider, else the
  address of the interface that routes off this host (like Parsl's
  ``address_by_route``), falling back to the host name's address;
* ``"0.0.0.0"`` (or ``"*"``): bind every interface, advertise the detected one;
* anything else: bind and advertise exactly that (a loopback one with a
  remote provider is reported as a problem: its managers cannot connect).

:func:`plan` is pure apart from the detection it is handed, so it is unit-tested
without a network.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

DETECT = "detect"
WILDCARDS = ("0.0.0.0", "*")
LOOPBACK = "127.0.0.1"
# any routable address works: connect() on a UDP socket sends nothing, it only
# asks the kernel which interface (and source address) would be used
_PROBES = ("192.0.2.1", "10.255.255.255", "8.8.8.8")


@dataclass(frozen=True)
class AddressPlan:
    """What the interchange binds and what managers are told to connect to."""

    bind: str
    advertise: str
    problem: str | None = None  # a reason managers may fail to connect


def address_by_route() -> str | None:
    """The source address of the interface that routes off this host (no packet
    is sent), or None when no route exists or it is a loopback one."""
    for probe in _PROBES:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect((probe, 9))
            addr = s.getsockname()[0]
        except OSError:
            continue
        finally:
            s.close()
        if addr and not is_loopback(addr) and addr != "0.0.0.0":
            return str(addr)
    return None


def address_by_hostname() -> str | None:
    """The first non-loopback IPv4 address the host name resolves to, if any."""
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET, socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        addr = str(info[4][0])
        if not is_loopback(addr):
            return addr
    return None


def detect_routable() -> str:
    """The address other hosts most likely reach this one at: the routing
    interface's, else the host name's, else loopback (with nothing better)."""
    return address_by_route() or address_by_hostname() or LOOPBACK


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if address.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def is_local_provider(provider: object) -> bool:
    """Whether blocks of ``provider`` run on this host (Parsl's LocalProvider)."""
    try:
        from parsl.providers import LocalProvider
    except ImportError:  # pragma: no cover - parsl is a dependency
        return False
    return isinstance(provider, LocalProvider)


def resolve(host: str) -> str | None:
    """The IPv4 address ``host`` resolves to here, or None."""
    try:
        return socket.gethostbyname(host)
    except (OSError, UnicodeError):
        return None


def plan(configured: str, local: bool, detect: Callable[[], str] = detect_routable,
         resolver: Callable[[str], str | None] = resolve) -> AddressPlan:
    """The bind and advertised address for the configured ``address``;
    ``local``: the provider runs managers on this host.  A host name is
    advertised as it is (managers resolve it), but one that resolves to
    loopback here (Debian maps the host name to 127.0.1.1) is a problem for a
    remote provider."""
    configured = (configured or DETECT).strip()
    if configured.lower() == DETECT:
        if local:
            return AddressPlan(LOOPBACK, LOOPBACK)
        found = detect()
        problem = None
        if is_loopback(found):
            problem = ("no routable address found on this host: managers on other hosts "
                       "cannot reach the interchange; set `address` in the endpoint config")
        return AddressPlan(found, found, problem)
    if configured in WILDCARDS:
        found = LOOPBACK if local else detect()
        problem = None
        if not local and is_loopback(found):
            problem = ("`address` 0.0.0.0 binds every interface but no routable address was "
                       "found to tell managers; set `address` to this host's address")
        return AddressPlan("0.0.0.0", found, problem)
    if not local and _is_ip(configured) is False:
        ip = resolver(configured)
        if ip is not None and is_loopback(ip):
            return AddressPlan(configured, configured, (
                f"`address` {configured!r} resolves to {ip}, a loopback address, on this "
                f"host, but the provider starts managers on other hosts; use address="
                f"\"detect\" (the default) or this host's address on the compute network"))
    if not local and is_loopback(configured):
        return AddressPlan(configured, configured, (
            f"`address` is {configured}, a loopback address, but the provider starts "
            f"managers on other hosts: they cannot connect; use address=\"detect\" (the "
            f"default) or this host's address on the compute network"))
    return AddressPlan(configured, configured)


def tcp_url(host: str, port: int) -> str:
    """``tcp://host:port`` (brackets around an IPv6 host)."""
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
