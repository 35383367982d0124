"""Identity -> local account, at the parent: the mapping documents in order
(expression rules; an external program run with the identity on stdin),
then the account looked up in the passwd database and checked against the
site's bounds (never root, never a denied account, never a uid outside
min_uid..max_uid, never a member of a denied group: :func:`check_account`).
"""
from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import selectors
import subprocess
import threading
import time
from dataclasses import dataclass

from endpoint.multiuser.site_config import SiteConfig
from funcx.protocol import identity_mapping as im

log = logging.getLogger("funcx.multiuser.mapper")
#: how long a mapping (or a refusal) is reused before it is asked again
CACHE_S = 60.0
#: identities whose mapping is cached at once (the oldest are dropped beyond it)
CACHE_MAX = 4096
#: the most an external mapping program may print (bytes); more is a failure
PROGRAM_OUTPUT_MAX = 65536


class Unmapped(Exception):
    """No account for this identity; the message says why (never a secret)."""


@dataclass(frozen=True)
class Account:
    """A local account a child runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str


def check_account(name: str, uid: int, groups: dict[int, str], cfg: SiteConfig) -> None:
    """Unmapped unless account ``name`` (``uid``, in ``groups``: gid -> name, its
    primary group included) is within the site's bounds (pure: no lookups)."""
    if name in cfg.denied_accounts or name == "root":
        raise Unmapped(f"account {name!r} is denied on this endpoint")
    if uid == 0 or uid < cfg.min_uid:
        raise Unmapped(f"account {name!r} has uid {uid}, below this endpoint's "
                       f"min_uid {cfg.min_uid} (system accounts are refused)")
    if uid > cfg.max_uid:
        raise Unmapped(f"account {name!r} has uid {uid}, above this endpoint's "
                       f"max_uid {cfg.max_uid}")
    for gid, gname in sorted(groups.items()):
        if gname in cfg.denied_groups or (gid == 0 and "root" in cfg.denied_groups):
            raise Unmapped(f"account {name!r} is in group {gname!r}, denied on this "
                           "endpoint (its members are refused: see denied_groups)")


def _group_names(gids: list[int]) -> dict[int, str]:
    out = {}
    for gid in gids:
        try:
            out[gid] = grp.getgrgid(gid).gr_name
        except KeyError:
            out[gid] = str(gid)
    return out


def lookup(name: str, cfg: SiteConfig) -> Account:
    """The passwd entry of ``name`` within the site's bounds, else Unmapped."""
    if name in cfg.denied_accounts or name == "root":
        raise Unmapped(f"account {name!r} is denied on this endpoint")
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise Unmapped(f"the mapped account {name!r} does not exist on this host") from None
    groups = tuple(sorted(set(os.getgrouplist(name, pw.pw_gid))))
    check_account(name, pw.pw_uid, _group_names(list(groups)), cfg)
    return Account(name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir, pw.pw_shell)


class _ProgramFailed(Exception):
    """The mapping program failed; the message says how (logged, never shown)."""


def _read_bounded(command: tuple[str, ...], stdin: bytes, timeout: float) -> bytes:
    """The program's stdout, at most PROGRAM_OUTPUT_MAX bytes within ``timeout``
    (stderr discarded); _ProgramFailed otherwise, the program killed."""
    proc = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, close_fds=True,
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"})
    assert proc.stdin is not None and proc.stdout is not None
    deadline = time.monotonic() + timeout
    out = bytearray()
    try:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it did not read its input: its answer (or exit status) says the rest
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _ProgramFailed(f"took over {timeout:g}s")
                if not sel.select(left):
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
                if len(out) > PROGRAM_OUTPUT_MAX:
                    raise _ProgramFailed(f"printed over {PROGRAM_OUTPUT_MAX} bytes")
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise _ProgramFailed(f"took over {timeout:g}s") from None
        if code != 0:
            raise _ProgramFailed(f"exited {code}")
        return bytes(out)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def run_program(command: tuple[str, ...], identity: dict[str, str], timeout: float) -> str | None:
    """Ask an external mapping program (run as the parent: root); None when it
    maps nothing or fails (logged): a timeout, an exit status, output over
    PROGRAM_OUTPUT_MAX bytes, not UTF-8, not JSON, too deep, or a malformed answer."""
    stdin = json.dumps(im.program_input(identity)).encode()
    try:
        raw = _read_bounded(command, stdin, timeout)
    except OSError as e:
        log.error("identity mapping program %s failed: %s", command[0], type(e).__name__)
        return None
    except _ProgramFailed as e:
        log.error("identity mapping program %s failed: %s", command[0], e)
        return None
    try:
        return im.program_output(json.loads(raw.decode("utf-8") or "null"), identity)
    except UnicodeDecodeError:
        log.error("identity mapping program %s answered something not UTF-8", command[0])
    except (ValueError, RecursionError):
        log.error("identity mapping program %s answered something not JSON (or too "
                  "deep)", command[0])
    return None


class Mapper:
    """Maps identities with the site's documents; thread-safe, with a short cache."""

    def __init__(self, cfg: SiteConfig):
        self.cfg = cfg
        self._lock = threading.Lock()
        self._cache: dict[tuple, tuple[float, Account | str]] = {}

    def account_name(self, identity: dict[str, str]) -> str | None:
        """The account name the documents give, trying each in order."""
        for kind, body in self.cfg.mapping.docs:
            if kind == im.EXPRESSION:
                name = im.map_by_rules(im.Mapping(((kind, body),)), identity)
            else:
                name = run_program(body, identity, self.cfg.mapping_timeout_s)  # type: ignore[arg-type]
            if name is not None:
                return name
        return None

    def map(self, identity: dict[str, str]) -> Account:
        """The account ``identity`` runs as, or Unmapped with the reason."""
        key = tuple(sorted(identity.items()))
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], str):
                raise Unmapped(hit[1])
            return hit[1]
        try:
            name = self.account_name(identity)
            if name is None:
                raise Unmapped(f"identity {identity.get('username') or identity.get('id')!r} "
                               "has no mapping to a local account on this endpoint")
            found: Account | str = lookup(name, self.cfg)
        except Unmapped as e:
            found = str(e)
        except Exception as e:  # noqa: BLE001 - a mapping that fails maps nothing
            log.error("identity mapping failed: %s", type(e).__name__)
            found = "the identity mapping failed on this endpoint: ask its administrators"
        with self._lock:
            if len(self._cache) >= CACHE_MAX:
                for k in [k for k, (until, _) in self._cache.items() if until <= now]:
                    del self._cache[k]
                while len(self._cache) >= CACHE_MAX:  # the oldest first
                    del self._cache[next(iter(self._cache))]
            self._cache[key] = (now + CACHE_S, found)
        if isinstance(found, str):
            raise Unmapped(found)
        return found
