"""CurveZMQ keys of one endpoint: how managers prove they belong to it.

On its first start an endpoint makes two keypairs with ``zmq.curve_keypair()``
and keeps them in ``<endpoint dir>/run/curve/`` (the directory 0700, every
file 0600, created with ``O_EXCL`` so no other mode ever exists):

* ``server.key_secret`` — the interchange's CURVE server keypair;
* ``manager.key_secret`` — the manager (client) keypair plus the server's
  public key: everything a manager needs, and what its launch names;
* ``authorized/manager.key`` — the manager's public key alone, the one
  certificate the interchange's ZAP handler accepts (any other client key is
  refused at the handshake).

The keys reach a manager as the *path* of ``manager.key_secret`` on its
command line (``--curve-keys``, see :class:`endpoint.launch.ManagerLaunch`):
the secret itself is never on a command line (``ps``), in a submit script,
in the worker's environment or in a log.  Managers therefore need the
endpoint directory on a filesystem they share with it, as they already need
the endpoint's Python (``sys.executable``).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import zmq

SERVER_FILE = "server.key_secret"
MANAGER_FILE = "manager.key_secret"
AUTHORIZED_DIR = "authorized"


class KeyFileError(RuntimeError):
    """A key file that is missing, unreadable, malformed or not private."""


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the start (never readable by others)."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


@dataclass(frozen=True)
class ManagerKeys:
    """What a manager holds: the server's public key and its own keypair (z85)."""

    server_public: bytes
    public: bytes
    secret: bytes

    def __repr__(self) -> str:  # never print a secret by accident
        return f"ManagerKeys(public={self.public.decode()!r}, secret=<hidden>)"

    @classmethod
    def load(cls, path: str | os.PathLike) -> ManagerKeys:
        """Read a ``manager.key_secret`` file; refuse one others can read."""
        p = Path(path)
        try:
            st = p.stat()
            if st.st_mode & 0o077:
                raise KeyFileError(f"key file {p} is readable by others "
                                   f"(mode {st.st_mode & 0o777:o}); it must be 0600")
            rec = json.loads(p.read_text())
            keys = cls(rec["server_public"].encode(), rec["public"].encode(),
                       rec["secret"].encode())
        except KeyFileError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise KeyFileError(f"cannot read the manager key file {p}: {type(e).__name__}") from None
        if not all(len(k) == 40 for k in (keys.server_public, keys.public, keys.secret)):
            raise KeyFileError(f"manager key file {p} does not hold z85 CURVE keys")
        return keys

    def apply(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE client of the interchange with these keys."""
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


@dataclass(frozen=True)
class CurveKeys:
    """An endpoint's keys, as the interchange uses them."""

    directory: Path
    server_public: bytes
    server_secret: bytes
    manager_public: bytes

    def __repr__(self) -> str:
        return f"CurveKeys(directory={str(self.directory)!r}, secret=<hidden>)"

    @property
    def manager_file(self) -> Path:
        """The 0600 file a manager's launch names (``--curve-keys``)."""
        return self.directory / MANAGER_FILE

    @property
    def authorized_dir(self) -> Path:
        """The directory of public certificates the ZAP handler accepts."""
        return self.directory / AUTHORIZED_DIR

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike) -> CurveKeys:
        """The endpoint's keys, made once (on first start) and reused after."""
        d = _private_dir(Path(directory))
        server, manager = d / SERVER_FILE, d / MANAGER_FILE
        if not server.exists() or not manager.exists():
            s_pub, s_sec = zmq.curve_keypair()
            m_pub, m_sec = zmq.curve_keypair()
            _write_private(server, json.dumps({"public": s_pub.decode(),
                                               "secret": s_sec.decode()}))
            _write_private(manager, json.dumps({"server_public": s_pub.decode(),
                                                "public": m_pub.decode(),
                                                "secret": m_sec.decode()}))
        try:
            rec = json.loads(server.read_text())
            s_pub, s_sec = rec["public"].encode(), rec["secret"].encode()
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise KeyFileError(f"cannot read the server key file {server}: "
                               f"{type(e).__name__}") from None
        mk = ManagerKeys.load(manager)
        if mk.server_public != s_pub:
            raise KeyFileError(f"{manager} and {server} do not belong together; "
                               f"delete both to make new keys")
        auth = _private_dir(d / AUTHORIZED_DIR)
        for old in auth.glob("*.key"):  # exactly one accepted key
            if old.name != "manager.key":
                old.unlink()
        _write_private(auth / "manager.key",
                       "# the one manager key this endpoint's interchange accepts\n"
                       f"metadata\ncurve\n    public-key = \"{mk.public.decode()}\"\n")
        return cls(d, s_pub, s_sec, mk.public)

    def apply_server(self, sock: zmq.Socket) -> None:
        """Make ``sock`` a CURVE server with the endpoint's server keypair."""
        sock.curve_server = True
        sock.curve_publickey = self.server_public
        sock.curve_secretkey = self.server_secret
