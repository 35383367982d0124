"""Block health: a pure record of blocks that fail, and the back-off before
the next submission.

A block fails when the provider's submit raises (``sbatch: not found``), when
its job runs for ``register_timeout`` seconds without a manager registering
(e.g. the managers cannot reach the interchange), or when its job ends before
any manager registered (e.g. a ``worker_init`` that exits).  Each failure is
kept as a :class:`Problem` (shown in the endpoint's status and in waiting
tasks' details) and pushes the next submission back exponentially
(``backoff_min`` doubling up to ``backoff_max``), instead of resubmitting a
batch job every few seconds.  A manager registering clears the failures.

No I/O and no clock: callers pass ``now`` (monotonic seconds, for timing) and
``wall`` (``time.time()``, for the ``since`` shown to people).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

#: problem kinds
SUBMIT_FAILED = "submit_failed"  #: the provider's submit raised
NEVER_REGISTERED = "never_registered"  #: a block's manager never registered
ADDRESS = "address"  #: the interchange address cannot work for this provider

MAX_MESSAGE = 500  # characters of a provider's error kept
_SECRET = re.compile(r"(?i)\b(password|passwd|token|secret|key|auth)(\s*[=:]\s*)\S+")
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/\s:@]*:[^/\s@]*@")


def scrub(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` bounded to ``limit`` characters, with anything that looks like a
    credential (``password=…``, ``token: …``, ``scheme://user:pass@``) masked."""
    text = _URL_CREDENTIALS.sub(r"\1***@", text)
    text = _SECRET.sub(r"\1\2***", text)
    text = " ".join(text.split())  # one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Problem:
    """Something that keeps tasks waiting, as shown to the endpoint's users."""

    kind: str
    message: str
    block: str | None
    since: float  # wall-clock time first seen

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "block": self.block,
                "since": self.since}


@dataclass
class _Pending:
    submitted: float  # monotonic
    running_since: float | None = None  # when the provider first said it runs


@dataclass
class BlockHealth:
    """Failures of blocks and when the next submission may go."""

    register_timeout: float
    backoff_min: float = 5.0
    backoff_max: float = 300.0
    failures: int = 0  # consecutive failures since a manager last registered
    next_submit_at: float = 0.0  # monotonic
    pending: dict[str, _Pending] = field(default_factory=dict)  # blocks not yet registered
    _problems: dict[tuple[str, str | None], Problem] = field(default_factory=dict)
    _static: list[Problem] = field(default_factory=list)

    # ------------------------------------------------------------- queries
    def may_submit(self, now: float) -> bool:
        """Whether the back-off allows submitting a block now."""
        return now >= self.next_submit_at

    def backoff(self) -> float:
        """The current delay after a failure: min doubling up to max."""
        if self.failures <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff_min * 2 ** (self.failures - 1))

    def problems(self) -> list[dict]:
        """Every current problem, oldest first, as JSON-able dicts."""
        every = self._static + list(self._problems.values())
        return [p.to_dict() for p in sorted(every, key=lambda p: p.since)]

    # -------------------------------------------------------------- events
    def report(self, kind: str, message: str, wall: float) -> None:
        """A standing problem not tied to a block (e.g. the address)."""
        self._static.append(Problem(kind, scrub(message), None, wall))

    def submit_failed(self, error: str, now: float, wall: float) -> float:
        """The provider's submit raised ``error``; returns the back-off (s)."""
        return self._fail(SUBMIT_FAILED, None, f"block submission failed: {error}", now, wall)

    def submitted(self, block: str, now: float) -> None:
        """A block was submitted: a submission failure is over; its manager is awaited."""
        self._problems.pop((SUBMIT_FAILED, None), None)
        self.pending[block] = _Pending(now)

    def running(self, block: str, now: float) -> None:
        """The provider says the block's job runs: the registration clock starts."""
        p = self.pending.get(block)
        if p is not None and p.running_since is None:
            p.running_since = now

    def registered(self, blocks: set[str]) -> None:
        """Managers of ``blocks`` registered: they are healthy, and so is the
        configuration, so failures and back-off are cleared."""
        if not blocks & set(self.pending):
            return
        for b in blocks:
            self.pending.pop(b, None)
        self.failures = 0
        self.next_submit_at = 0.0
        self._problems = {k: p for k, p in self._problems.items() if k[0] != NEVER_REGISTERED}

    def overdue(self, now: float, wall: float) -> list[str]:
        """Blocks whose job has run ``register_timeout`` without a manager
        registering: each becomes a problem; the caller cancels them."""
        late = [b for b, p in self.pending.items()
                if p.running_since is not None and now - p.running_since >= self.register_timeout]
        for b in late:
            del self.pending[b]
            self._fail(NEVER_REGISTERED, b,
                       f"block {b} ran {self.register_timeout:g}s without its manager "
                       f"registering with the interchange (can the compute nodes reach "
                       f"the interchange address? see the endpoint log)", now, wall)
        return late

    def ended(self, blocks: list[str], now: float, wall: float) -> list[str]:
        """Jobs of ``blocks`` ended; those whose manager never registered are
        failures (returned)."""
        failed = [b for b in blocks if b in self.pending]
        for b in failed:
            del self.pending[b]
            self._fail(NEVER_REGISTERED, b,
                       f"block {b} ended before its manager registered (check worker_init "
                       f"and the block's output in the endpoint's submit_scripts)", now, wall)
        return failed

    def cancelled(self, blocks: list[str]) -> None:
        """Blocks we cancelled (scale-in): no longer awaited, not a failure."""
        for b in blocks:
            self.pending.pop(b, None)

    # ------------------------------------------------------------ internal
    def _fail(self, kind: str, block: str | None, message: str, now: float, wall: float) -> float:
        self.failures += 1
        delay = self.backoff()
        self.next_submit_at = now + delay
        if kind == NEVER_REGISTERED:  # one row for the latest such block
            old = [k for k in self._problems if k[0] == NEVER_REGISTERED]
            since = min((self._problems[k].since for k in old), default=wall)
            for k in old:
                del self._problems[k]
        else:
            prev = self._problems.get((kind, block))
            since = prev.since if prev else wall
        self._problems[(kind, block)] = Problem(kind, scrub(message), block, since)
        return delay


def register_timeout_for(configured: float | None, local: bool, default: float) -> float:
    """The registration timeout: the configured one, else ``default``, at most
    60 s for managers on this host (they start in seconds)."""
    if configured is not None:
        return float(configured)
    return min(60.0, default) if local else default
