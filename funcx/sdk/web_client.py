"""HTTP access to the service: keep-alive connections, bearer auth, and
errors turned into :class:`funcx.errors.FuncxAPIError`.

Built on urllib3 directly: for the small requests of the hot path it costs
half what the ``requests`` layer on top of it does.  An ``https://`` service is
verified against ``FUNCX_CA_BUNDLE``, ``REQUESTS_CA_BUNDLE``,
``CURL_CA_BUNDLE`` or the system store (:mod:`funcx.sdk.tls`); a certificate
that does not verify raises :class:`funcx.sdk.tls.CertificateNotTrusted`.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import urllib3

from funcx.defaults import setting
from funcx.errors import FuncxAPIError, ServiceUnreachable, api_error
from funcx.protocol import error_codes
from funcx.sdk.tls import TLSError, TrustStore, ca_bundle, verify_failure


class WebClient:
    """A thin JSON-over-HTTP client for one service address.

    ``wait_out_429``: a call that gives no ``retry_s`` still waits out a 429
    (the service's Retry-After) for up to ``HTTP_RETRY_S`` — what
    ``FuncXClient`` and ``FuncXExecutor`` use; off, such a call fails at once
    (tools that want to see every answer)."""

    def __init__(self, base_url: str, token: str | Callable[[], str | None] | None = None,
                 timeout: float | None = None, *, wait_out_429: bool = False):
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = float(timeout or setting("HTTP_TIMEOUT_S"))
        self.wait_out_429 = wait_out_429
        # retry only failures to connect (nothing was sent), never a request; an
        # answer with Retry-After (429, 503, 413) is ours to see: urllib3 would
        # otherwise count it against status=0 and raise MaxRetryError instead
        retries = urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0,
                                respect_retry_after_header=False)
        #: the CAs an https service must be signed by (None: plain http)
        self.trust: TrustStore | None = None
        tls: dict[str, Any] = {}
        if self.base_url.lower().startswith("https://"):
            self.trust = ca_bundle(self.base_url)
            tls["cert_reqs"] = "CERT_REQUIRED"
            if self.trust.is_dir:
                tls["ca_cert_dir"] = self.trust.path
            elif self.trust.path:
                tls["ca_certs"] = self.trust.path
        self.pool = urllib3.PoolManager(maxsize=4, retries=retries, **tls)
        self.request_count = 0  # for tests and benchmarks: HTTP requests made
        self.request_hooks: list[Callable[[str, str, int], None]] = []

    @property
    def token(self) -> str | None:
        return self._token() if callable(self._token) else self._token

    def request(self, method: str, path: str, *, json_body: Any = None,
                params: dict | None = None, timeout: float | None = None,
                data: bytes | list[bytes] | None = None, throttle: bool = True, retry_s: float | None = None,
                idempotent: bool | None = None, headers: dict | None = None) -> Any:
        """One request, retried within a time budget where that is safe.

        ``retry_s`` is the budget.  Given (``0``: no retries), a request the
        service did not answer is retried with backoff where safe: always if
        nothing was sent (connection refused) or the service refused before
        doing anything (503, 429); after a reset connection or a 502/504 only
        if the request is ``idempotent`` (GET by default; a submit that carries
        an Idempotency-Key).  Left out, no retries — but with
        :attr:`wait_out_429` a 429 is retried for up to ``HTTP_RETRY_S``: the
        service is up and said when to come back.

        Each wait is the larger of the backoff and the service's Retry-After;
        a Retry-After longer than what is left of the budget raises the typed
        error at once (with a note of the retries), rather than asking early.
        507 (the store is full) is never retried."""
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        only_429 = retry_s is None
        if retry_s is None:
            budget = float(setting("HTTP_RETRY_S")) if self.wait_out_429 else 0.0
        else:
            budget = max(0.0, retry_s)
        started = time.monotonic()
        deadline = started + budget
        backoff = 0.1
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._request_once(method, path, json_body=json_body, params=params,
                                          timeout=timeout, data=data, throttle=throttle,
                                          headers=headers)
            except (ServiceUnreachable, FuncxAPIError) as e:
                if not _may_retry(e, idempotent, only_429):
                    raise
                left = deadline - time.monotonic()
                wait = retry_pause(e, backoff)
                if wait > left:
                    if getattr(e, "retry_after", None) is not None or left <= 0:
                        if budget > 0:
                            _note_gave_up(e, attempts, time.monotonic() - started, budget)
                        raise
                    wait = left  # no Retry-After: one last try at the end of the budget
                time.sleep(wait)
                backoff = min(backoff * 2, 2.0)
                throttle = False  # a retry is not a new request for the throttle

    def _request_once(self, method: str, path: str, *, json_body: Any, params: dict | None,
                      timeout: float | None, data: bytes | list[bytes] | None, throttle: bool,
                      headers: dict | None) -> Any:
        headers = {"User-Agent": "funcx-sdk", **(headers or {})}
        if isinstance(data, list):  # a body in parts (large blobs), sent without joining them
            headers["Content-Length"] = str(sum(len(part) for part in data))
        tok = self.token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        if json_body is not None:
            data = json.dumps(json_body, separators=(",", ":")).encode()
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        if throttle:
            for hook in self.request_hooks:
                hook(method, path, int(headers.get("Content-Length") or len(data or b"")))
        self.request_count += 1
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        try:
            resp = self.pool.request(method, url, body=data, headers=headers,
                                     timeout=timeout or self.timeout, redirect=False)
        except urllib3.exceptions.HTTPError as e:
            tls_error = self._tls_error(e) if _is_tls_failure(e) else None
            if tls_error is not None:  # never retried: the same handshake fails the same way
                raise tls_error from None
            err = ServiceUnreachable(self.base_url, "timed out" if isinstance(
                e, urllib3.exceptions.TimeoutError) else _reason(e))
            err.sent = not _not_sent(e)
            raise err from None
        if resp.status >= 400:
            raise _api_error(resp)
        if not resp.data:
            return None
        if resp.headers.get("Content-Type", "").startswith("application/octet-stream"):
            return resp.data  # a blob result (funcx.sdk.blobs): its bytes as they are
        try:
            return json.loads(resp.data)
        except ValueError:
            raise FuncxAPIError(resp.status, error_codes.BAD_RESPONSE,
                                f"the service answered non-JSON: {resp.data[:200]!r}") from None

    def _tls_error(self, e: Exception) -> TLSError | None:
        return verify_failure(self.base_url, e, self.trust or TrustStore(None, "system"))

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
#: statuses the service answers before doing anything: any request may be repeated
REFUSED_STATUSES = (429, 503)


def _is_tls_failure(e: Exception) -> bool:
    cause = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
    return isinstance(cause, urllib3.exceptions.SSLError)


def _reason(e: Exception) -> str:
    """A short reason for an unreachable service (a TLS failure names itself)."""
    if _is_tls_failure(e):
        cause: Exception | None = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) \
            else e
        args = getattr(cause, "args", ())
        inner = args[0] if args and isinstance(args[0], Exception) else cause
        return f"TLS: {getattr(inner, 'reason', None) or type(inner).__name__}"
    return type(e).__name__


def _not_sent(e: Exception) -> bool:
    """Whether the request failed before anything reached the service."""
    cause = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
    return isinstance(cause, urllib3.exceptions.ConnectTimeoutError)  # incl. NewConnectionError


def _may_retry(e: Exception, idempotent: bool, only_429: bool = False) -> bool:
    if isinstance(e, FuncxAPIError) and e.http_status == 429:
        # too many requests / long-polls, or a quota: refused, nothing queued
        return True
    if only_429:
        return False
    if isinstance(e, ServiceUnreachable):
        return idempotent or not getattr(e, "sent", True)
    if isinstance(e, FuncxAPIError) and e.http_status in RETRY_STATUSES:
        return idempotent or e.http_status in REFUSED_STATUSES
    return False


def retry_pause(e: Exception, backoff: float) -> float:
    """How long to wait before repeating a request that failed with ``e``: the
    backoff, or the service's Retry-After where that is longer (never shorter)."""
    retry_after = getattr(e, "retry_after", None)
    return backoff if retry_after is None else max(backoff, retry_after)


def _note_gave_up(e: Exception, attempts: int, elapsed: float, budget: float) -> None:
    retry_after = getattr(e, "retry_after", None)
    asked = f"; the service asked to wait {retry_after:g} s more" if retry_after else ""
    note = (f"funcx: {attempts} attempt(s) over {elapsed:.1f} s, within a retry budget of "
            f"{budget:g} s (FUNCX_HTTP_RETRY_S or the call's timeout){asked}")
    if hasattr(e, "add_note"):  # Python 3.11+
        e.add_note(note)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


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
    err.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    return err
