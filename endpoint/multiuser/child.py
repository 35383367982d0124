"""The child endpoint's entry point, already running as the mapped account
(``python -m endpoint.multiuser.child``, started by endpoint.multiuser.children).

It dies with the parent (SIGTERM on the parent's death, set here because a
uid change clears what was set before it; the parent's pid comes with the
start-up data, so a parent that is PID 1 in a container is no special case),
enters the account's home (the parent starts it in ``/``: a root-squashed NFS
home may be closed to root), reads its start-up data from
stdin (the manager key; never on a command line or in the environment),
writes the key 0600 under ``~/.funcx/multi-user/<endpoint id>/<child>/`` in
the account's own home (so no root-owned directory has to be readable by
it), and runs a manager and its workers against its interchange.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path


def key_path(endpoint_id: str, child: str) -> Path:
    """Where this child keeps its manager key (in the account's home)."""
    return Path.home() / ".funcx" / "multi-user" / endpoint_id / child / "manager.key_secret"


def write_key(path: Path, text: str) -> None:
    """Write ``text`` 0600 at ``path`` (directories 0700), replacing what is there."""
    for d in reversed(path.parents[:4]):
        d.mkdir(exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def main() -> None:
    from funcx.lifecycle import _prctl_pdeathsig

    _prctl_pdeathsig(signal.SIGTERM)
    data = json.loads(sys.stdin.read())
    # the parent may be PID 1 (a container): only a changed parent means it died
    # (before the death signal was set); never "our parent is init"
    if os.getppid() != int(data.get("parent_pid") or os.getppid()):
        sys.exit("the parent endpoint is gone")
    # started in / (a root-squashed home may be closed to root): the home now, as the user
    try:
        os.chdir(Path.home())
    except OSError as e:
        print(f"cannot enter the home directory {Path.home()}: {e.strerror}; staying in /",
              file=sys.stderr, flush=True)
    path = key_path(str(data["endpoint_id"]), str(data["child"]))
    write_key(path, data["manager_keys"])
    from endpoint import manager

    print(f"child {data['child']} as uid {os.getuid()} (home {Path.home()})", file=sys.stderr,
          flush=True)
    manager.main([*data["argv"], "--curve-keys", str(path)])


if __name__ == "__main__":
    main()
