"""``%funcx`` and ``%%funcx``: a thin layer over the SDK (ipyparallel's ``%%px``
is the model: flags, and "wait quietly a moment, then show progress")."""
from __future__ import annotations

import ast
import difflib
import hashlib
import inspect
import re
import shlex
import sys
import threading
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from funcx.sdk.render import error_text, exception_lines, fill_source, remote_header
from jupyter_ext.cellfuture import CellFuture

QUIET_WAIT_S = 1.0  # wait this long before showing a progress bar
SUBMIT_WAIT_S = 30.0  # --no-wait: wait at most this long for the task id (one request)

HELP = """%funcx endpoint [NAME|ID]       show or set the notebook's default endpoint
%funcx endpoints                 your endpoints, with status
%funcx whoami | login [--token-file F]
%funcx run f(1, 2) [--endpoint EP] [--no-wait] [--timeout S]
%funcx shell [--endpoint EP] [--walltime S] [--no-wait] [--timeout S] CMD
                                 run a shell command there ({x}: the notebook's x, as in !cmd)
%funcx status [TASK|GROUP]       %funcx result TASK       %funcx monitor [GROUP]
%funcx panel                     an endpoint panel
%%funcx [--endpoint EP] [--in a,b] [--out NAME] [--no-wait] [--timeout S]
                                 run the cell on the endpoint (--no-wait: the cell's future,
                                 whose result is the cell's value, or the --out variables)"""


#: the ``%funcx`` commands (for "did you mean")
COMMANDS = ("endpoint", "endpoints", "whoami", "login", "run", "shell", "status", "result",
            "monitor", "panel")


def unknown_options(text: str, flags: dict[str, bool], where: str) -> None:
    """Refuse ``--words`` that are not options of ``where`` (a UsageError naming them)."""
    bad = [wd for wd in text.split() if wd.startswith("--") and wd[2:] not in flags]
    if bad:
        known = ", ".join(f"--{f}" for f in flags)
        raise UsageError(f"unknown option {bad[0]} for {where} (its options: {known})")


class RemoteError(Exception):
    """A remote failure, shown as the remote traceback (not a local one):
    what the task printed, then its frames with source lines, once."""

    def __init__(self, text: str, original: BaseException | None = None):
        super().__init__(text.strip().splitlines()[-1] if text.strip() else "remote error")
        self.text, self.original = text, original

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a local traceback
        if self.original is not None:
            return without_cell_runner(exception_lines(self.original, color=True))
        return [f"\x1b[31m{remote_header()}\x1b[0m",
                *without_cell_runner(fill_source(self.text.rstrip().splitlines()))]


#: the funcX frame that runs a ``%%funcx`` cell on the endpoint (not the user's)
_RUNNER_FRAME = re.compile(r'^\s*File "[^"]*(?:cellrun\.py|function run_cell[^"]*)", '
                           r'line \d+, in run_cell$')


def without_cell_runner(lines: list[str]) -> list[str]:
    """Traceback lines without the frame of :func:`jupyter_ext.cellrun.run_cell`
    (and its source line): only the cell's own frames are the user's."""
    out: list[str] = []
    skip = False
    for line in lines:
        if _RUNNER_FRAME.match(line):
            skip = True
            continue
        if skip and line.startswith("    "):
            continue
        skip = False
        out.append(line)
    return out


def parse_flags(line: str, flags: dict[str, bool]) -> tuple[dict[str, Any], list[str]]:
    """``--name value`` / ``--flag`` options (``flags`` maps names to "takes no
    value"); the remaining words in order.  A flag without its value is a
    :class:`UsageError` (one line in the notebook, no traceback)."""
    words = shlex.split(line)
    opts: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(words):
        wd = words[i]
        if wd.startswith("--") and wd[2:] in flags:
            name = wd[2:].replace("-", "_")
            if flags[wd[2:]]:
                opts[name] = True
            else:
                if i + 1 >= len(words) or words[i + 1].startswith("--"):
                    raise UsageError(f"{wd} needs a value")
                opts[name] = words[i + 1]
                i += 1
        else:
            rest.append(wd)
        i += 1
    return opts, rest


def split_call(line: str, flags: dict[str, bool]) -> tuple[dict[str, Any], str]:
    """Flags (before or after it) and the function call of a line, the call's
    text untouched (``shlex`` would eat the quotes of its string arguments):
    the shortest run of words that parses as a call, with only flags around it."""
    spans = [m.span() for m in re.finditer(r"\S+", line)]
    for i, (start, _) in enumerate(spans):
        for _, end in spans[i:]:
            try:
                if not isinstance(ast.parse(line[start:end], mode="eval").body, ast.Call):
                    continue
                opts, rest = parse_flags(f"{line[:start]} {line[end:]}", flags)
            except (SyntaxError, ValueError, UsageError):
                continue
            if not rest:
                return opts, line[start:end]
    opts, words = parse_flags(line, flags)
    return opts, " ".join(words)


@magics_class
class FuncXMagics(Magics):
    def __init__(self, shell, client: Any = None):
        super().__init__(shell)
        self._client = client
        self.endpoint_id: str | None = None
        self._registered: dict[str, str] = {}  # code hash -> function id
        self._executors: dict[str, Any] = {}

    # ---------------------------------------------------------------- state
    @property
    def client(self):
        if self._client is None:
            from funcx import FuncXClient

            self._client = FuncXClient()
            self._client.throttling_enabled = False  # magics batch and wait by push
        return self._client

    def executor(self, endpoint_id: str):
        from funcx import FuncXExecutor

        ex = self._executors.get(endpoint_id)
        if ex is None or ex._shutdown:  # shut down (by the user, or at exit): a new one
            ex = self._executors[endpoint_id] = FuncXExecutor(endpoint_id=endpoint_id,
                                                              client=self.client)
        return ex

    def _user_ns(self) -> dict[str, Any]:
        """The notebook's variables (the magics are always registered with a shell)."""
        assert self.shell is not None
        return self.shell.user_ns

    def _endpoint(self, given: str | None) -> str:
        if given:
            return self.client.resolve_endpoint(given)
        if self.endpoint_id is None:
            raise UsageError("no endpoint: use `%funcx endpoint NAME` or --endpoint")
        return self.endpoint_id

    def register(self, fn: Callable) -> str:
        """Register ``fn`` once per version of its code (re-registered when its source changes)."""
        try:
            key_src = inspect.getsource(fn)
        except (OSError, TypeError):
            key_src = self.client.fx_serializer.serialize(fn)
        key = hashlib.sha256(f"{fn.__module__}.{fn.__qualname__}\n{key_src}".encode()).hexdigest()
        if key not in self._registered:
            self._registered[key] = self.client.register_function(fn)
        return self._registered[key]

    def wait(self, futures: list, timeout: float | None) -> None:
        """Wait quietly a moment; if still running, show a progress bar."""
        import concurrent.futures as cf

        quiet = QUIET_WAIT_S if timeout is None else min(QUIET_WAIT_S, timeout)
        done, pending = cf.wait(futures, timeout=quiet)
        if not pending:
            return
        import ipywidgets as w

        bar = w.IntProgress(value=len(done), min=0, max=len(futures), description="funcx")
        display(bar)
        lock = threading.Lock()

        def tick(_f):
            with lock:
                bar.value += 1

        for f in pending:
            f.add_done_callback(tick)
        _, still = cf.wait(futures, timeout=None if timeout is None else max(0, timeout - quiet))
        bar.bar_style = "warning" if still else "success"
        if still:
            raise TimeoutError(f"{len(still)} task(s) still running after {timeout} s "
                               "(use --no-wait to get futures)")

    # ---------------------------------------------------------------- magic
    @line_cell_magic
    def funcx(self, line: str, cell: str | None = None):
        if cell is not None:
            return self._cell(line, cell)
        words = line.strip().split(None, 1)
        if not words:
            print(HELP)
            return None
        command, rest = words[0], (words[1] if len(words) > 1 else "")
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            close = difflib.get_close_matches(command, COMMANDS, n=1)
            raise UsageError(f"unknown %funcx command {command!r}"
                             + (f" (did you mean {close[0]!r}?)" if close else "")
                             + "; `%funcx` alone lists the commands")
        return handler(rest)

    def _cmd_endpoint(self, rest: str):
        if rest.strip():
            self.endpoint_id = self.client.resolve_endpoint(rest.strip())
        if self.endpoint_id is None:
            print("no default endpoint; set one with %funcx endpoint NAME")
            return None
        return self.client.get_endpoint_status(self.endpoint_id)

    def _cmd_endpoints(self, rest: str):
        from jupyter_ext.widgets import EndpointPanel

        return EndpointPanel(self.client)

    _cmd_panel = _cmd_endpoints

    def _cmd_whoami(self, rest: str):
        me = self.client.whoami()
        return f"{me['username']} ({me['user_id']}) at {self.client.funcx_service_address}"

    def _cmd_login(self, rest: str):
        import getpass

        from funcx.sdk.login import login_with_token, parse_token_text, read_token_file

        opts, _ = parse_flags(rest, {"token-file": False})
        # the same hand-over as `funcx login --token-file`: the service's
        # credentials JSON, a Globus token JSON or a bare token; no error quotes it
        handed = (read_token_file(opts["token_file"]) if "token_file" in opts
                  else parse_token_text(getpass.getpass("funcX token: ")))
        me = login_with_token(self.client.funcx_service_address, handed.token)
        self._client = None
        return f"logged in as {me['user']}"

    def _cmd_run(self, rest: str):
        flags = {"no-wait": True, "endpoint": False, "timeout": False}
        opts, expr = split_call(rest, flags)
        try:
            call = ast.parse(expr, mode="eval").body
        except SyntaxError as e:
            unknown_options(expr, flags, "%funcx run")
            raise UsageError(f"%funcx run needs a call such as f(1, 2): {e.msg}") from None
        if not isinstance(call, ast.Call):
            unknown_options(expr, flags, "%funcx run")
            raise UsageError("%funcx run needs a call such as f(1, 2)")
        ns = self._user_ns()
        # the user's own expressions, evaluated in their own namespace
        fn = eval(compile(ast.Expression(call.func), "<funcx>", "eval"), ns)
        args = [eval(compile(ast.Expression(a), "<funcx>", "eval"), ns) for a in call.args]
        kwargs = {k.arg: eval(compile(ast.Expression(k.value), "<funcx>", "eval"), ns)
                  for k in call.keywords}
        eid = self._endpoint(opts.get("endpoint"))
        fut = self.executor(eid).submit_to_registered_function(self.register(fn), tuple(args), kwargs)
        if opts.get("no_wait"):
            fut.submitted.wait(SUBMIT_WAIT_S)  # so that its display shows the task id
            return fut
        self.wait([fut], _timeout(opts))
        return self._value(fut)

    def _cmd_shell(self, rest: str):
        from funcx.sdk.shell_function import ShellCommandError, ShellFunction
        from jupyter_ext import shellmagic

        opts, command = shellmagic.split_shell_line(rest)
        try:
            fn = ShellFunction(shellmagic.literal(command), walltime=shellmagic.walltime_of(opts))
        except ShellCommandError as e:
            raise UsageError(str(e)) from None
        eid = self._endpoint(opts.get("endpoint"))
        fut = self.executor(eid).submit_to_registered_function(self.register(fn), (), {})
        if opts.get("no_wait"):
            fut.submitted.wait(SUBMIT_WAIT_S)  # so that its display shows the task id
            return fut
        self.wait([fut], _timeout(opts))
        result = self._value(fut)
        shellmagic.show(result)
        return result

    def _value(self, fut):
        exc = fut.exception()
        if exc is not None:
            raise RemoteError(error_text(exc), exc) from None
        return fut.result()

    def _cmd_status(self, rest: str):
        ident = rest.strip() or self._default_group()
        try:
            return self.client.get_task(ident)
        except Exception:  # noqa: BLE001 - not a task id: try it as a task group
            from funcx.sdk.progress import GroupProgress

            return {"task_group_id": ident, **GroupProgress.of(self.client, ident).summary()}

    def _cmd_result(self, rest: str):
        tid = rest.strip()
        if not tid:
            raise UsageError("%funcx result needs a task id: %funcx result TASK_ID")
        st = self.client.wait([tid])[tid]
        if "exception" in st:
            raise RemoteError(error_text(st["exception"]), st["exception"])
        return st["result"]

    def _cmd_monitor(self, rest: str):
        from jupyter_ext.widgets import TaskMonitor

        return TaskMonitor(self.client, rest.strip() or self._default_group())

    def _default_group(self) -> str:
        """The task group of the first executor the magics made, else the client's session."""
        return next(iter(self._executors.values())).task_group_id if self._executors \
            else self.client.session_task_group_id

    # ----------------------------------------------------------------- cell
    def _cell(self, line: str, cell: str):
        from jupyter_ext.cellrun import run_cell

        flags = {"endpoint": False, "in": False, "out": False, "no-wait": True, "timeout": False}
        opts, rest = parse_flags(line, flags)
        if rest:
            unknown_options(" ".join(rest), flags, "%%funcx")
            raise UsageError(f"%%funcx takes only options, not {rest[0]!r} "
                             f"(its options: {', '.join('--' + f for f in flags)})")
        ns = self._user_ns()
        names = [n.strip() for n in opts.get("in", "").split(",") if n.strip()]
        missing = [n for n in names if n not in ns]
        if missing:
            raise UsageError(f"--in names not defined in the notebook: {', '.join(missing)}")
        outputs = [n.strip() for n in opts.get("out", "").split(",") if n.strip()]
        timeout = _timeout(opts)
        eid = self._endpoint(opts.get("endpoint"))
        fut = self.executor(eid).submit_to_registered_function(
            self.register(run_cell), (cell, {n: ns[n] for n in names}, outputs), {})
        if opts.get("no_wait"):
            fut.submitted.wait(SUBMIT_WAIT_S)  # so that its display shows the task id
            # its result is what the cell shows; --out names land in the notebook when it is done
            return CellFuture(fut, outputs, ns)
        self.wait([fut], timeout)
        exc = fut.exception()
        if exc is not None:
            raise RemoteError(error_text(exc), exc) from None
        out = fut.result()
        show_output(out)
        ns.update(out["outputs"])
        if outputs:
            return None
        return out["value"]


def _timeout(opts: dict[str, Any]) -> float | None:
    """The ``--timeout S`` option in seconds (a UsageError if not a number)."""
    if "timeout" not in opts:
        return None
    try:
        return float(opts["timeout"])
    except ValueError:
        raise UsageError(f"--timeout needs a number of seconds, not {opts['timeout']!r}") from None


def show_output(out: dict[str, Any]) -> None:
    """Print what a ``%%funcx`` cell printed on the endpoint, stream by stream."""
    if out.get("stdout"):
        sys.stdout.write(out["stdout"])
    if out.get("stderr"):
        sys.stderr.write(out["stderr"])
