"""Which certificate authorities the SDK trusts for an ``https://`` service,
and the errors that say so when a service's certificate is refused.

Every HTTP call of the SDK, the ``funcx`` CLI, the endpoint agent and the
Jupyter extension goes through :class:`funcx.sdk.web_client.WebClient`, which
asks :func:`ca_bundle` once.  The order is the one ``requests`` users expect,
with funcX's own setting first: ``FUNCX_CA_BUNDLE``, then
``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``, then the system store
(OpenSSL's default paths).  Each names a PEM file or a directory of hashed
certificates (``c_rehash``), as in ``requests``.
"""
from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from funcx.defaults import setting
from funcx.errors import FuncxError

#: the environment variables that name a CA bundle, in the order they are honoured
BUNDLE_VARIABLES = ("FUNCX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class TrustStore:
    """Where the CAs come from: a file, a directory, or the system store
    (``path`` None); ``source`` names the variable that chose it."""

    path: str | None
    source: str

    @property
    def is_dir(self) -> bool:
        return self.path is not None and Path(self.path).is_dir()

    def describe(self) -> str:
        return "the system's trust store" if self.path is None else f"{self.path} ({self.source})"


class TLSConfigError(FuncxError):
    """A CA bundle setting names a file that cannot be used."""


class TLSError(FuncxError):
    """The TLS handshake with the service failed for a reason other than an
    untrusted certificate (e.g. ``https://`` to a plain-HTTP port)."""

    def __init__(self, url: str, reason: str):
        self.url = url
        super().__init__(
            f"TLS with the funcX service at {url} failed ({reason}); check that the address "
            "and scheme are right (https:// to a service started with TLS, http:// otherwise)")


class CertificateNotTrusted(TLSError):
    """The service's certificate did not verify against the trusted CAs."""

    def __init__(self, url: str, reason: str, store: TrustStore):
        self.url, self.store = url, store
        if "mismatch" in reason.lower():
            todo = ("use an address the certificate names (or have the service's certificate "
                    "reissued for this one)")
        else:
            todo = ("set FUNCX_CA_BUNDLE (or REQUESTS_CA_BUNDLE) to the PEM file of the CA that "
                    "signed the service's certificate (the CA its operator gave out)")
        FuncxError.__init__(
            self, f"the certificate of the funcX service at {url} is not trusted ({reason}); "
                  f"trusted CAs: {store.describe()}; {todo}")


def ca_bundle(url: str | None = None) -> TrustStore:
    """The CAs to trust for https service URLs (see the module docstring).
    With none of the variables set, the service this ``$FUNCX_HOME`` runs
    (``url`` is the one its record names) is verified against the CA it
    serves with (``funcx service tls-init``'s), so its own host needs no setting.

    Raises :class:`TLSConfigError` if the chosen variable names a path that
    does not exist, naming the variable (not falling back silently to a
    weaker or different store)."""
    candidates = [("FUNCX_CA_BUNDLE", str(setting("CA_BUNDLE")))]
    candidates += [(name, os.environ.get(name, "")) for name in BUNDLE_VARIABLES[1:]]
    for name, value in candidates:
        if value:
            path = Path(value).expanduser()
            if not path.exists():
                raise TLSConfigError(
                    f"{name} names {path}, which does not exist; point it at the PEM file of "
                    "the CA that signed the funcX service's certificate, or unset it to use "
                    "the system's trust store")
            return TrustStore(str(path), name)
    local = _local_service_ca(url)
    if local is not None:
        return TrustStore(local, "the CA of the service this FUNCX_HOME runs")
    return TrustStore(None, "system")


def _local_service_ca(url: str | None) -> str | None:
    """The CA file of the service recorded under this ``$FUNCX_HOME``, when
    ``url`` is that service's address and the record names one."""
    if not url:
        return None
    from funcx.defaults import funcx_home
    from funcx.home import read_json

    rec = read_json(funcx_home() / "service" / "service.json") or {}
    ca = rec.get("tls_ca")
    if not ca or rec.get("url", "").rstrip("/") != url.rstrip("/") or not Path(ca).is_file():
        return None
    return str(ca)


#: OpenSSL reasons that a retry cannot cure: the two sides do not speak the
#: same TLS (or one speaks none); anything else (an EOF or reset mid-handshake,
#: e.g. a service restarting) is treated as an unreachable service
MISCONFIGURED = frozenset({
    "WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION",
    "NO_PROTOCOLS_AVAILABLE", "SSLV3_ALERT_HANDSHAKE_FAILURE", "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_ACCESS_DENIED", "PACKET_LENGTH_TOO_LONG",
})


def verify_failure(url: str, exc: BaseException, store: TrustStore) -> TLSError | None:
    """The SDK error for a failed handshake ``exc`` (found anywhere in its
    cause chain): :class:`CertificateNotTrusted` for a verification failure,
    :class:`TLSError` for a mismatch no retry cures (:data:`MISCONFIGURED`),
    None for a transient failure (the caller treats it as unreachable)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            reason = cur.verify_message or cur.reason or "certificate verify failed"
            return CertificateNotTrusted(url, str(reason), store)
        if isinstance(cur, ssl.SSLError):
            return TLSError(url, str(cur.reason)) if cur.reason in MISCONFIGURED else None
        nxt = getattr(cur, "reason", None)
        cur = nxt if isinstance(nxt, BaseException) else (cur.__cause__ or cur.__context__)
    return None
