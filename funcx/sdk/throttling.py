"""Client-side throttling, as the funcX SDK documents it: at most
``max_requests`` per ``period`` seconds and ``max_request_size`` bytes per
request, raising ``MaxRequestsExceeded`` / ``MaxRequestSizeExceeded``.
Switch it off with ``fxc.throttling_enabled = False``."""
from __future__ import annotations

import time
from collections import deque

from funcx.errors import MaxRequestsExceeded, MaxRequestSizeExceeded


class Throttle:
    def __init__(self, max_requests: int = 20, period: float = 10.0,
                 max_request_size: int = 5 * 1024 * 1024):
        self.enabled = True
        self.max_requests = max_requests
        self.period = period
        self.max_request_size = max_request_size
        self._times: deque[float] = deque()

    def check(self, method: str, path: str, size: int) -> None:
        """Raise before a request that would break a limit; else count it."""
        if not self.enabled:
            return
        if size > self.max_request_size:
            raise MaxRequestSizeExceeded(
                f"a {size}-byte request exceeds the client limit of {self.max_request_size} bytes; "
                "submit fewer or smaller tasks per batch, or set throttling_enabled = False")
        now = time.monotonic()
        while self._times and now - self._times[0] > self.period:
            self._times.popleft()
        if len(self._times) >= self.max_requests:
            raise MaxRequestsExceeded(
                f"more than {self.max_requests} requests in {self.period:g} s; batch your "
                "submissions (create_batch / FuncXExecutor) or set throttling_enabled = False")
        self._times.append(now)
