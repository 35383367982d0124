"""``funcx.sdk.config``, as the funcX 0.0.1a5 package reference documents it:
SDK options kept on disk, the login check and safe printing.

Options live in ``$FUNCX_HOME/sdk_options.json`` (0600).  There is no Globus
native-app client here unless the service runs in Globus mode, so
:func:`internal_auth_client` says so instead of pretending.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from funcx.defaults import funcx_home
from funcx.errors import FuncxError


def _options_file() -> Path:
    return funcx_home() / "sdk_options.json"


def _read() -> dict[str, Any]:
    try:
        data = json.loads(_options_file().read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_option(option: str, value: Any) -> None:
    """Write an option to disk (the caller reloads what it needs)."""
    from funcx.home import write_private_json

    data = _read()
    data[option] = value
    write_private_json(_options_file(), data)


def lookup_option(option: str) -> Any:
    """The stored value of ``option``, or None."""
    return _read().get(option)


def remove_option(option: str) -> Any:
    """Remove ``option``; return the value it had (None if it had none)."""
    from funcx.home import write_private_json

    data = _read()
    value = data.pop(option, None)
    if _options_file().exists():
        write_private_json(_options_file(), data)
    return value


def internal_auth_client():
    """The Globus native-app client funcX 0.x used for logins.  This service
    issues its own tokens (``funcx login``); in Globus mode use globus_sdk's
    own ``NativeAppAuthClient`` with your app's client id."""
    raise FuncxError("internal_auth_client(): this funcX issues its own tokens (`funcx login "
                     "--token-file`); there is no built-in Globus native-app client")


def check_logged_in() -> bool:
    """Whether a token is stored (or client credentials are set) and the
    service accepts it."""
    from funcx.sdk.login import default_login_manager
    from funcx.sdk.service_address import resolve_service_address
    from funcx.sdk.web_client import WebClient

    url = resolve_service_address()
    try:
        token = default_login_manager(url).get_token()
        if not token:
            return False
        WebClient(url, token).get("/v2/whoami")
    except FuncxError:
        return False
    return True


def safeprint(s: Any) -> None:
    """Print ``s``, never failing on an output encoding or a closed pipe."""
    try:
        print(s)
        sys.stdout.flush()
    except (UnicodeEncodeError, BrokenPipeError, OSError):
        text = str(s).encode(sys.stdout.encoding or "utf-8", errors="replace")
        try:
            sys.stdout.buffer.write(text + b"\n")
        except (AttributeError, OSError):
            pass


def format_output(dataobject: Any) -> None:
    """Print ``dataobject`` safely (JSON for dicts and lists)."""
    if isinstance(dataobject, (dict, list)):
        safeprint(json.dumps(dataobject, indent=2, default=str))
    else:
        safeprint(dataobject)
