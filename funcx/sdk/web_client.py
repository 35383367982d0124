"""HTTP access to the service: keep-alive connections, bearer auth, and
errors turned into :class:`funcx.errors.FuncxAPIError`.

Built on urllib3 directly: for the small requests of the hot path it costs
half what the ``requests`` layer on top of it does.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import urllib3

from funcx.defaults import setting
from funcx.errors import FuncxAPIError, ServiceUnreachable, api_error
from funcx.protocol import error_codes


class WebClient:
    """A thin JSON-over-HTTP client for one service address."""

    def __init__(self, base_url: str, token: str | Callable[[], str | None] | None = None,
                 timeout: float | None = None):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = float(timeout or setting("HTTP_TIMEOUT_S"))
        # retry only failures to connect (nothing was sent), never a request
        self.pool = urllib3.PoolManager(maxsize=4, retries=urllib3.Retry(
            total=2, connect=2, read=0, redirect=0, status=0, other=0))
        self.request_count = 0  # for tests and benchmarks: HTTP requests made
        self.request_hooks: list[Callable[[str, str, int], None]] = []

    @property
    def token(self) -> str | None:
        return self._token() if callable(self._token) else self._token

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: dict | None = None, timeout: float | None = None,
                data: bytes | None = None, throttle: bool = True, retry_s: float = 0.0,
                idempotent: bool | None = None, headers: dict | None = None) -> Any:
        """One request.  With ``retry_s`` > 0, a request the service did not
        answer is retried (with backoff) for up to that long where that is
        safe: always if nothing was sent (connection refused) or the service
        answered 503 (it refused before doing anything); after a reset
        connection or a 502/504 only if the request is ``idempotent`` (GET by
        default; a submit that carries an Idempotency-Key)."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        deadline = time.monotonic() + retry_s
        backoff = 0.1
        while True:
            try:
                return self._request_once(method, path, json_body=json_body, params=params,
                                          timeout=timeout, data=data, throttle=throttle,
                                          headers=headers)
            except (ServiceUnreachable, FuncxAPIError) as e:
                left = deadline - time.monotonic()
                if left <= 0 or not _may_retry(e, idempotent):
                    raise
                pause = min(backoff, left, getattr(e, "retry_after", None) or backoff)
                time.sleep(pause)
                backoff = min(backoff * 2, 2.0)
                throttle = False  # a retry is not a new request for the throttle

    def _request_once(self, method: str, path: str, *, json_body: Any, params: dict | None,
                      timeout: float | None, data: bytes | None, throttle: bool,
                      headers: dict | None) -> Any:
        headers = {"User-Agent": "funcx-sdk", **(headers or {})}
        tok = self.token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":")).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        if throttle:
            for hook in self.request_hooks:
                hook(method, path, len(data or b""))
        self.request_count += 1
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        try:
            resp = self.pool.request(method, url, body=data, headers=headers,
                                     timeout=timeout or self.timeout, redirect=False)
        except urllib3.exceptions.HTTPError as e:
            err = ServiceUnreachable(self.base_url, "timed out" if isinstance(
                e, urllib3.exceptions.TimeoutError) else type(e).__name__)
            err.sent = not _not_sent(e)
            raise err from None
        if resp.status >= 400:
            raise _api_error(resp)
        if not resp.data:
            return None
        try:
            return json.loads(resp.data)
        except ValueError:
            raise FuncxAPIError(resp.status, error_codes.BAD_RESPONSE,
                                f"the service answered non-JSON: {resp.data[:200]!r}") from None

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("POST", path, json_body=body if body is not None else {}, **kw)

    def put(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("PUT", path, json_body=body if body is not None else {}, **kw)

    def delete(self, path: str, **kw) -> Any:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        self.pool.clear()


RETRY_STATUSES = (502, 503, 504)


def _not_sent(e: Exception) -> bool:
    """Whether the request failed before anything reached the service."""
    cause = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
    return isinstance(cause, urllib3.exceptions.ConnectTimeoutError)  # incl. NewConnectionError


def _may_retry(e: Exception, idempotent: bool) -> bool:
    if isinstance(e, ServiceUnreachable):
        return idempotent or not getattr(e, "sent", True)
    if isinstance(e, FuncxAPIError) and e.http_status in RETRY_STATUSES:
        return idempotent or e.http_status == 503  # 503: refused before doing anything
    return False


def _api_error(resp: urllib3.BaseHTTPResponse) -> FuncxAPIError:
    try:
        body = json.loads(resp.data)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or error_codes.HTTP_ERROR)
        message = str(body.get("message") or body.get("reason") or resp.reason)
    else:
        code, message = error_codes.HTTP_ERROR, f"{resp.reason}: {resp.data[:200]!r}"
    err = api_error(resp.status, code, message, body)
    try:
        err.retry_after = float(resp.headers.get("Retry-After") or 0) or None
    except ValueError:
        err.retry_after = None
    return err
