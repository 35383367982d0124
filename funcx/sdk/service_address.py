"""Which service to talk to, in order: the explicit argument,
``FUNCX_SERVICE_ADDRESS``, the service recorded under ``$FUNCX_HOME`` by
``funcx service start``, the service the stored token was issued by (``funcx
login``), then ``http://127.0.0.1:5000``."""
from __future__ import annotations

from funcx.defaults import funcx_home, setting
from funcx.home import read_json, recorded_service_url


def resolve_service_address(explicit: str | None = None) -> str:
    addr = explicit or str(setting("SERVICE_ADDRESS")) or recorded_service_url() or \
        _logged_in_service_url() or f"http://{setting('SERVICE_HOST')}:{setting('SERVICE_PORT')}"
    addr = addr.rstrip("/")
    # funcX 1.0 users pass ".../v2": accept it, the client adds versions itself
    for suffix in ("/v2", "/v3"):
        addr = addr.removesuffix(suffix)
    return addr


def _logged_in_service_url() -> str | None:
    rec = read_json(funcx_home() / "credentials" / "token.json")
    return rec.get("service_url") if rec else None
