"""Which address the interchange binds and advertises (endpoint.addresses),
and the templates that detect it.  Pure: detection is handed in, except one
test of the real route lookup on this host."""
from __future__ import annotations

import ipaddress

import pytest

from endpoint.addresses import (
    AddressPlan,
    address_by_route,
    detect_routable,
    is_local_provider,
    is_loopback,
    plan,
    tcp_url,
)


def routable() -> str:
    return "10.1.2.3"


def no_route() -> str:
    return "127.0.0.1"


@pytest.mark.parametrize("configured, local, expected", [
    ("detect", True, AddressPlan("127.0.0.1", "127.0.0.1")),
    ("", True, AddressPlan("127.0.0.1", "127.0.0.1")),
    ("detect", False, AddressPlan("10.1.2.3", "10.1.2.3")),
    ("DETECT", False, AddressPlan("10.1.2.3", "10.1.2.3")),
    # 0.0.0.0 binds every interface but never tells managers 0.0.0.0 or loopback
    ("0.0.0.0", False, AddressPlan("0.0.0.0", "10.1.2.3")),
    ("*", False, AddressPlan("0.0.0.0", "10.1.2.3")),
    ("0.0.0.0", True, AddressPlan("0.0.0.0", "127.0.0.1")),
    ("192.168.7.7", False, AddressPlan("192.168.7.7", "192.168.7.7")),
    ("127.0.0.1", True, AddressPlan("127.0.0.1", "127.0.0.1")),
])
def test_plan(configured, local, expected):
    assert plan(configured, local, routable) == expected


@pytest.mark.parametrize("configured", ["127.0.0.1", "127.0.1.1", "localhost", "::1"])
def test_loopback_with_a_remote_provider_is_a_problem(configured):
    p = plan(configured, False, routable)
    assert p.advertise == configured  # what the owner asked, reported, not silently changed
    assert p.problem is not None and "loopback" in p.problem and configured in p.problem


def test_a_host_name_that_resolves_to_loopback_is_a_problem_for_a_remote_provider():
    def resolver(name):
        return {"login1": "127.0.1.1", "login2": "10.0.0.9"}.get(name)

    bad = plan("login1", False, routable, resolver)
    assert bad.problem is not None and "127.0.1.1" in bad.problem and bad.advertise == "login1"
    assert plan("login2", False, routable, resolver) == AddressPlan("login2", "login2")
    assert plan("login1", True, routable, resolver).problem is None  # managers run here


@pytest.mark.parametrize("configured", ["detect", "0.0.0.0"])
def test_no_routable_address_with_a_remote_provider_is_a_problem(configured):
    p = plan(configured, False, no_route)
    assert p.problem is not None and "address" in p.problem


def test_the_detected_address_on_this_host_is_not_loopback():
    """The real lookup: on a host with a route off it, the routing interface's
    address; it is never 0.0.0.0, and it is an address this host can bind."""
    found = detect_routable()
    ipaddress.ip_address(found)
    assert found != "0.0.0.0"
    by_route = address_by_route()
    if by_route is not None:
        assert not is_loopback(by_route) and found == by_route
        import socket

        s = socket.socket()
        try:
            s.bind((found, 0))  # an address of this host
        finally:
            s.close()


def test_is_loopback_and_local_provider():
    from parsl.providers import LocalProvider, SlurmProvider

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and not is_loopback("10.0.0.1")
    assert is_local_provider(LocalProvider()) and not is_local_provider(SlurmProvider())


def test_tcp_url():
    assert tcp_url("10.0.0.1", 5) == "tcp://10.0.0.1:5"
    assert tcp_url("fe80::1", 5) == "tcp://[fe80::1]:5"


@pytest.mark.parametrize("template", ["slurm", "pbs", "kubernetes"])
def test_remote_templates_detect_the_address(template, tmp_path):
    """The Slurm/PBS/Kubernetes templates detect the address (and show how
    to set it), never default to loopback."""
    from endpoint.config_file import load
    from endpoint.templates import render

    text = render("ep", template)
    assert 'address="detect"' in text and "address_by_interface" in text
    path = tmp_path / "config.py"
    path.write_text(text)
    try:
        config = load(path)
    except Exception as e:  # noqa: BLE001 - e.g. kubernetes package missing
        pytest.skip(f"{template} provider not importable here: {e}")
    p = plan(config.address, is_local_provider(config.provider), routable)
    assert p.advertise == "10.1.2.3" and p.problem is None


def test_config_default_address_is_detect(monkeypatch):
    from endpoint.config import Config

    monkeypatch.delenv("FUNCX_INTERCHANGE_ADDRESS", raising=False)
    assert Config().address == "detect"
    with pytest.raises(ValueError, match="address"):
        Config(address="  ")
    with pytest.raises(ValueError, match="block_register_timeout"):
        Config(block_register_timeout=0)
