"""HTTP access to the service: keep-alive connections, bearer auth, and
errors turned into :class:`funcx.errors.FuncxAPIError`.

Built on urllib3 directly: for the small requests of the hot path it costs
half what the ``requests`` layer on top of it does.
"""
from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import urlencode

import urllib3

from funcx.defaults import setting
from funcx.errors import FuncxAPIError, ServiceUnreachable


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
                data: bytes | None = None, throttle: bool = True) -> Any:
        headers = {"User-Agent": "funcx-sdk"}
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
        except urllib3.exceptions.TimeoutError:
            raise ServiceUnreachable(self.base_url, "timed out") from None
        except urllib3.exceptions.HTTPError as e:
            raise ServiceUnreachable(self.base_url, type(e).__name__) from None
        if resp.status >= 400:
            raise _api_error(resp)
        if not resp.data:
            return None
        try:
            return json.loads(resp.data)
        except ValueError:
            raise FuncxAPIError(resp.status, "BAD_RESPONSE",
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


def _api_error(resp: urllib3.BaseHTTPResponse) -> FuncxAPIError:
    try:
        body = json.loads(resp.data)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or "HTTP_ERROR")
        message = str(body.get("message") or body.get("reason") or resp.reason)
    else:
        code, message = "HTTP_ERROR", f"{resp.reason}: {resp.data[:200]!r}"
    return FuncxAPIError(resp.status, code, message, body)
