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
    # funcX 1.0 users pass ".../v2", the 0.x documents ".../v1" (or ".../api/v1"):
    # accept them, the client adds versions itself
    for suffix in ("/v1", "/v2", "/v3"):
        addr = addr.removesuffix(suffix)
    return addr


def configured_service_address(explicit: str | None = None) -> str | None:
    """The service someone chose: the argument (``--service``),
    ``FUNCX_SERVICE_ADDRESS`` or the service ``funcx service start`` recorded
    here; None if none was (the fallbacks of :func:`resolve_service_address`
    are not a choice)."""
    addr = explicit or str(setting("SERVICE_ADDRESS")) or recorded_service_url()
    return resolve_service_address(addr) if addr else None


def login_service_address(explicit: str | None, named: str | None) -> tuple[str, bool]:
    """Where ``funcx login`` sends a handed-over token: the configured service
    (:func:`configured_service_address`), else the one the token's file
    ``named``, else the default.  The flag says whether the named one was
    adopted (the caller says so to the user)."""
    configured = configured_service_address(explicit)
    if configured:
        return configured, False
    if named:
        return resolve_service_address(named), True
    return resolve_service_address(None), False


def _logged_in_service_url() -> str | None:
    rec = read_json(funcx_home() / "credentials" / "token.json")
    return rec.get("service_url") if rec else None
