"""``%funcx shell [--endpoint EP] [--walltime S] [--no-wait] [--timeout S] CMD``:
run a shell command on an endpoint from a notebook (a ``ShellFunction``).

As with IPython's ``!cmd``, ``{name}`` and ``$name`` in the line are the
notebook's variables (IPython fills them in before the magic sees the line;
write ``{{``/``}}`` for a literal brace in a line that uses them, while a line
whose fields are not all notebook variables is left as written); what reaches
the endpoint runs as written, braces included.  The command's
stdout and stderr are printed in the cell; its value is the ``ShellResult``
(``returncode``, ``stdout``, ...)."""
from __future__ import annotations

import re
import sys
from typing import Any

from IPython.core.error import UsageError

#: the options before the command (True: takes no value); -e is --endpoint
FLAGS = {"endpoint": False, "walltime": False, "timeout": False, "no-wait": True}
_WORD = re.compile(r"\s*(\S+)")


def split_shell_line(line: str) -> tuple[dict[str, Any], str]:
    """The leading options of a ``%funcx shell`` line and the command after
    them, its text untouched (quotes, pipes, redirections)."""
    opts: dict[str, Any] = {}
    pos = 0
    while True:
        m = _WORD.match(line, pos)
        if not m:
            break
        word = m.group(1)
        name = "endpoint" if word == "-e" else word[2:] if word.startswith("--") else None
        if word == "--":  # the command follows, even one that starts with --
            pos = m.end()
            break
        if name is None or name not in FLAGS:
            if word.startswith("--"):
                raise UsageError(f"%funcx shell: unknown option {word} (its options: "
                                 f"{', '.join('--' + f for f in FLAGS)}; write -- before a "
                                 f"command that starts with --)")
            break
        pos = m.end()
        if FLAGS[name]:
            opts[name.replace("-", "_")] = True
            continue
        v = _WORD.match(line, pos)
        if not v:
            raise UsageError(f"{word} needs a value")
        opts[name] = v.group(1)
        pos = v.end()
    command = line[pos:].strip()
    if not command:
        raise UsageError("%funcx shell needs a command: %funcx shell [--endpoint EP] "
                         "[--walltime S] [--no-wait] [--timeout S] CMD")
    return opts, command


def literal(command: str) -> str:
    """``command`` as a ShellFunction template that formats to itself."""
    return command.replace("{", "{{").replace("}", "}}")


def walltime_of(opts: dict[str, Any]) -> float | None:
    if "walltime" not in opts:
        return None
    try:
        return float(opts["walltime"])
    except ValueError:
        raise UsageError(f"--walltime needs a number of seconds, not "
                         f"{opts['walltime']!r}") from None


def show(result: Any) -> None:
    """Print a shell result's streams in the cell (and a non-zero exit status)."""
    sys.stdout.write(result.stdout or "")
    sys.stderr.write(result.stderr or "")
    if result.returncode:
        why = f" ({result.exception_name}: past its walltime)" if result.exception_name else ""
        sys.stderr.write(f"[exit status {result.returncode}{why}]\n")
