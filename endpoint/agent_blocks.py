"""The agent's blocks: one scaling round (which blocks run, registered,
ended or are overdue; then more or fewer blocks by the strategy), and
submitting or cancelling blocks with back-off after failures.  A part of
:class:`endpoint.agent.Agent` (which holds the state named below), kept apart
to keep modules small."""
from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from endpoint.strategy import ScalingInput, decide

if TYPE_CHECKING:
    from endpoint.agent_state import AgentState
    from endpoint.block_health import BlockHealth
    from endpoint.blocks import Blocks
    from endpoint.config import Config
    from endpoint.interchange import Interchange

log = logging.getLogger("funcx.agent")


class BlockScaling:
    """Scaling and block submission of an agent (see the module docstring)."""

    config: Config
    blocks: Blocks
    interchange: Interchange
    health: BlockHealth
    health_lock: threading.Lock
    room: threading.Condition
    state: AgentState

    def scale_once(self) -> None:
        """One scaling round: note which blocks run, registered, ended or are
        overdue (:class:`BlockHealth`), then add or remove blocks, adding only
        when the back-off after failed blocks allows."""
        gone = self.blocks.forget_finished()
        now, wall = time.monotonic(), time.time()
        registered = {m.block_id for m in list(self.interchange.managers.values())}
        with self.health_lock:
            self.health.registered(registered)
            for b in self.blocks.running:
                self.health.running(b, now)
            failed = self.health.ended(gone, now, wall)
            overdue = [b for b in self.health.overdue(now, wall) if b in self.blocks.jobs]
        for b in failed:
            log.error("block %s ended before its manager registered; next block in %.0fs",
                      b, self.health.backoff())
        if overdue:
            log.error("block(s) %s: no manager registered within %gs; cancelling, next "
                      "block in %.0fs", overdue, self.health.register_timeout,
                      self.health.backoff())
            self.cancel_blocks(overdue)
        if not self.config.scaling_enabled:
            return
        with self.room:
            outstanding = self.state.inflight
        delta = decide(ScalingInput(
            outstanding=outstanding, blocks=len(self.blocks.jobs),
            workers_per_block=self.config.workers_per_node(),
            min_blocks=self.blocks.min_blocks, max_blocks=self.blocks.max_blocks,
            idle_for=time.monotonic() - self.interchange.idle_since,
            max_idletime=self.config.max_idletime))
        if delta > 0:
            self.submit_blocks(delta)
        elif delta < 0:
            busy = self.interchange.busy_blocks()
            idle = [b for b in self.blocks.jobs if b not in busy]
            self.cancel_blocks(idle[: -delta])
            with self.health_lock:
                self.health.cancelled(idle[: -delta])

    def cancel_blocks(self, block_ids: list[str]) -> None:
        """Cancel blocks; their managers' silence that follows is expected."""
        self.interchange.retire_blocks(set(block_ids))
        self.blocks.scale_in(block_ids)

    def submit_blocks(self, n: int) -> list[str]:
        """Submit up to ``n`` blocks unless backing off; a failed submission
        becomes a problem and pushes the next one back."""
        now = time.monotonic()
        with self.health_lock:
            if not self.health.may_submit(now):
                return []
        started = self.blocks.scale_out(n)
        with self.health_lock:
            for b in started:
                self.health.submitted(b, now)
            error = self.blocks.last_error
            if error is not None:
                delay = self.health.submit_failed(error, now, time.time())
                log.error("next block submission in %.0fs", delay)
        return started
