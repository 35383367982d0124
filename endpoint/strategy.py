"""The scaling strategy: a pure decision of how many blocks to add or remove."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingInput:
    outstanding: int  # tasks held by the endpoint and not finished
    blocks: int  # blocks requested and not yet cancelled (pending or running)
    workers_per_block: int
    min_blocks: int
    max_blocks: int
    idle_for: float  # seconds since the endpoint last had outstanding tasks
    max_idletime: float


def decide(s: ScalingInput) -> int:
    """Blocks to add (> 0) or to remove (< 0).

    Scale out when tasks need more workers than the blocks give, up to
    ``max_blocks``; keep at least ``min_blocks``; scale in to ``min_blocks``
    once idle for ``max_idletime``.
    """
    if s.outstanding > 0:  # never scale in while work is outstanding
        needed = math.ceil(s.outstanding / max(1, s.workers_per_block))
        target = max(s.min_blocks, min(s.max_blocks, needed))
        return max(0, target - s.blocks)
    if s.idle_for >= s.max_idletime:
        return s.min_blocks - s.blocks
    return max(0, s.min_blocks - s.blocks)
