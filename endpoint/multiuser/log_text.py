"""A child's log as printed to the administrator (`funcx-endpoint logs --child`):
the log is written by the account's own processes, so its bytes are the user's;
control characters (terminal escapes, carriage returns, backspaces) are shown
escaped rather than sent to the administrator's terminal."""
from __future__ import annotations

import re

#: C0 controls but tab and newline, DEL, and C1 controls (U+0080..U+009F)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(line: str) -> str:
    """``line`` with every control character but tab and newline as ``\\xNN``."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", line)
