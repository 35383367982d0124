"""HTTP access to the service: one keep-alive session, bearer auth, and
errors turned into :class:`funcx.errors.FuncxAPIError`."""
from __future__ import annotations

import json
from typing import Any, Callable

import requests

from funcx.defaults import setting
from funcx.errors import FuncxAPIError, ServiceUnreachable


class WebClient:
    """A thin JSON-over-HTTP client for one service address."""

    def __init__(self, base_url: str, token: str | Callable[[], str | None] | None = None,
                 timeout: float | None = None):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = float(timeout or setting("HTTP_TIMEOUT_S"))
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "funcx-sdk"
        self.request_count = 0  # for tests and benchmarks: HTTP requests made
        self.request_hooks: list[Callable[[str, str, int], None]] = []

    @property
    def token(self) -> str | None:
        return self._token() if callable(self._token) else self._token

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: dict | None = None, timeout: float | None = None,
                data: bytes | None = None, throttle: bool = True) -> Any:
        headers = {}
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
        try:
            resp = self.session.request(method, url, data=data, params=params, headers=headers,
                                        timeout=timeout or self.timeout)
        except requests.ConnectionError as e:
            raise ServiceUnreachable(self.base_url, type(e).__name__) from None
        except requests.Timeout:
            raise ServiceUnreachable(self.base_url, "timed out") from None
        if resp.status_code >= 400:
            raise _api_error(resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise FuncxAPIError(resp.status_code, "BAD_RESPONSE",
                                f"the service answered non-JSON: {resp.text[:200]!r}") from None

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("POST", path, json_body=body if body is not None else {}, **kw)

    def put(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("PUT", path, json_body=body if body is not None else {}, **kw)

    def delete(self, path: str, **kw) -> Any:
        return self.request("DELETE", path, **kw)

    def close(self) -> None:
        self.session.close()


def _api_error(resp: requests.Response) -> FuncxAPIError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or "HTTP_ERROR")
        message = str(body.get("message") or body.get("reason") or resp.reason)
    else:
        code, message = "HTTP_ERROR", f"{resp.reason}: {resp.text[:200]}"
    return FuncxAPIError(resp.status_code, code, message, body)
