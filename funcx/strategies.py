"""``funcx.strategies``: the scaling strategies of the funcX 0.0.1a5 reference,
as the values a ``Config(strategy=...)`` accepts.

They hold their parameters only: the endpoint's one scaling policy
(:mod:`endpoint.strategy`: scale out with outstanding tasks, up to
``max_blocks``; scale in to ``min_blocks`` after ``max_idletime`` seconds idle)
reads ``max_idletime`` from them.  ``threshold`` and ``interval`` are kept for
the reference's signatures; the endpoint re-decides at every heartbeat.
"""
from __future__ import annotations


class BaseStrategy:
    """Threshold-interval flow control (the reference's base class)."""

    def __init__(self, *args: object, threshold: int = 20, interval: float = 5) -> None:
        self.threshold = threshold
        self.interval = interval

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class SimpleStrategy(BaseStrategy):
    """The simple strategy: ``Config(strategy=SimpleStrategy(max_idletime=60))``."""

    def __init__(self, *args: object, threshold: int = 20, interval: float = 1,
                 max_idletime: float = 60) -> None:
        super().__init__(*args, threshold=threshold, interval=interval)
        self.max_idletime = max_idletime


class KubeSimpleStrategy(SimpleStrategy):
    """The simple strategy for Kubernetes (the same policy here)."""


__all__ = ["BaseStrategy", "KubeSimpleStrategy", "SimpleStrategy"]
