"""``%funcx`` and ``%%funcx``: a thin layer over the SDK (ipyparallel's ``%%px``
is the model: flags, and "wait quietly a moment, then show progress")."""
from __future__ import annotations

import ast
import hashlib
import inspect
import re
import shlex
import sys
import threading
from collections.abc import Callable
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

from funcx.sdk.render import error_text

QUIET_WAIT_S = 1.0  # wait this long before showing a progress bar

HELP = """%funcx endpoint [NAME|ID]       show or set the notebook's default endpoint
%funcx endpoints                 your endpoints, with status
%funcx whoami | login [--token-file F]
%funcx run f(1, 2) [--endpoint EP] [--no-wait]
%funcx status [TASK|GROUP]       %funcx result TASK       %funcx monitor [GROUP]
%funcx panel                     an endpoint panel
%%funcx [--endpoint EP] [--in a,b] [--out NAME] [--no-wait] [--timeout S]
                                 run the cell on the endpoint"""


class RemoteError(Exception):
    """A remote failure, shown as the remote traceback (not a local one)."""

    def __init__(self, text: str, original: BaseException | None = None):
        super().__init__(text.strip().splitlines()[-1] if text.strip() else "remote error")
        self.text, self.original = text, original

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a local traceback
        return ["\x1b[31mRemote traceback (from the endpoint):\x1b[0m",
                *with_cell_source(self.text.rstrip().splitlines())]


_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line (?P<line>\d+), in ')


def with_cell_source(lines: list[str]) -> list[str]:
    """Frames of functions defined in notebook cells come back without their
    source line (the endpoint has no copy of the cell); this kernel has the
    cell in memory, so fill the line in."""
    import linecache

    out = []
    for i, text in enumerate(lines):
        out.append(text)
        m = _FRAME.match(text)
        if m is None:
            continue
        entry = linecache.cache.get(m["file"])
        if entry and len(entry) == 4 and entry[1] is None \
                and not (lines[i + 1:] or [""])[0].startswith("    "):
            source = linecache.getline(m["file"], int(m["line"])).strip()  # in-memory cell
            if source:
                out.append(f"    {source}")
    return out


def parse_flags(line: str, flags: dict[str, bool]) -> tuple[dict[str, Any], list[str]]:
    """``--name value`` / ``--flag`` options (``flags`` maps names to "takes no
    value"); the remaining words in order."""
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
                if i + 1 >= len(words):
                    raise ValueError(f"{wd} needs a value")
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
            except (SyntaxError, ValueError):
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

        if endpoint_id not in self._executors:
            self._executors[endpoint_id] = FuncXExecutor(endpoint_id=endpoint_id, client=self.client)
        return self._executors[endpoint_id]

    def _user_ns(self) -> dict[str, Any]:
        """The notebook's variables (the magics are always registered with a shell)."""
        assert self.shell is not None
        return self.shell.user_ns

    def _endpoint(self, given: str | None) -> str:
        if given:
            return self.client.resolve_endpoint(given)
        if self.endpoint_id is None:
            raise ValueError("no endpoint: use `%funcx endpoint NAME` or --endpoint")
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
            raise ValueError(f"unknown %funcx command {command!r}\n{HELP}")
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
        opts, expr = split_call(rest, {"no-wait": True, "endpoint": False, "timeout": False})
        try:
            call = ast.parse(expr, mode="eval").body
        except SyntaxError as e:
            raise ValueError(f"%funcx run needs a call such as f(1, 2): {e.msg}") from None
        if not isinstance(call, ast.Call):
            raise ValueError("%funcx run needs a call such as f(1, 2)")  # noqa: TRY004 - usage
        ns = self._user_ns()
        # the user's own expressions, evaluated in their own namespace
        fn = eval(compile(ast.Expression(call.func), "<funcx>", "eval"), ns)
        args = [eval(compile(ast.Expression(a), "<funcx>", "eval"), ns) for a in call.args]
        kwargs = {k.arg: eval(compile(ast.Expression(k.value), "<funcx>", "eval"), ns)
                  for k in call.keywords}
        eid = self._endpoint(opts.get("endpoint"))
        fut = self.executor(eid).submit_to_registered_function(self.register(fn), tuple(args), kwargs)
        if opts.get("no_wait"):
            return fut
        self.wait([fut], float(opts["timeout"]) if "timeout" in opts else None)
        return self._value(fut)

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
            raise ValueError("%funcx result TASK_ID")
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

        opts, _ = parse_flags(line, {"endpoint": False, "in": False, "out": False,
                                     "no-wait": True, "timeout": False})
        ns = self._user_ns()
        names = [n.strip() for n in opts.get("in", "").split(",") if n.strip()]
        missing = [n for n in names if n not in ns]
        if missing:
            raise NameError(f"--in names not defined in the notebook: {', '.join(missing)}")
        outputs = [n.strip() for n in opts.get("out", "").split(",") if n.strip()]
        eid = self._endpoint(opts.get("endpoint"))
        fut = self.executor(eid).submit_to_registered_function(
            self.register(run_cell), (cell, {n: ns[n] for n in names}, outputs), {})
        if opts.get("no_wait"):
            return fut
        self.wait([fut], float(opts["timeout"]) if "timeout" in opts else None)
        out = self._value(fut)
        if out["stdout"]:
            sys.stdout.write(out["stdout"])
        if out["stderr"]:
            sys.stderr.write(out["stderr"])
        ns.update(out["outputs"])
        if outputs:
            return None
        return out["value"]

