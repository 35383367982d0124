"""funcX 0.0.1a5 ``funcx.sdk.utils.throttling``: the throttling exceptions and
limits under their documented path.

The limits are funcX 1.x's (20 requests per 10 s, 5 MB per request): where the
0.0.1a5 manual (5 per 5 s, 2 MB) and the 1.x documents disagree, the later
generation wins.  The client itself is not a ``globus_sdk`` ``BaseClient``, so
``ThrottledBaseClient`` is not provided; ``FuncXClient`` throttles the same way
(``fxc.throttling_enabled = False`` switches it off).
"""
from __future__ import annotations

from funcx.errors import MaxRequestsExceeded, MaxRequestSizeExceeded, ThrottlingException
from funcx.sdk.throttling import Throttle

DEFAULT_MAX_REQUESTS = Throttle().max_requests
DEFAULT_MAX_REQUEST_SIZE = Throttle().max_request_size

__all__ = ["DEFAULT_MAX_REQUESTS", "DEFAULT_MAX_REQUEST_SIZE", "MaxRequestSizeExceeded",
           "MaxRequestsExceeded", "ThrottlingException"]
