"""A task group's completion events as one streamed request (server-sent
events): many answers over one request, so a watcher waiting on task after
task pays for one HTTP request, one authentication and one long-poll slot per
``timeout`` rather than per answer (README "How results reach the SDK").

The service streams ``GET /v2/taskgroup/{tg}/events`` when asked with
``Accept: text/event-stream``: each ``data:`` message is one answer of the
long-poll (``{"taskgroup_id", "last_id", "tasks"}``) and a comment line is a
heartbeat, sent when no event came for a while (the watcher's chance to stop
listening).  A service that answers JSON instead (an older one, or one whose
long-poll threads are all busy) gives one answer and the stream ends there.
Every answer is decoded through :class:`funcx.protocol.events.EventsAnswer`:
the service is not trusted to send what it should.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import msgspec
import urllib3

from funcx.errors import FuncxAPIError, ServiceUnreachable
from funcx.protocol import error_codes, events
from funcx.protocol.events import STREAM_TYPE, EventsAnswer, messages
from funcx.sdk.web_client import WebClient, _api_error, _is_tls_failure, _reason


def decode_answer(data: bytes) -> EventsAnswer:
    """One answer, checked; FuncxAPIError BAD_RESPONSE if it is not one."""
    try:
        return events.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise FuncxAPIError(200, error_codes.BAD_RESPONSE,
                            f"the service's events answer is malformed: {e}") from None


class EventStream:
    """One streamed events request; iterate for answers (None: a heartbeat).

    :meth:`close` may be called from another thread: it ends the iteration
    (the connection is dropped, not reused)."""

    def __init__(self, web: WebClient, path: str, params: dict[str, Any], timeout: float,
                 stream: bool = True):
        self.web, self.path, self.params, self.timeout = web, path, params, timeout
        #: False: ask for one JSON answer (a plain long-poll), a one-answer stream
        self.stream = stream
        self._resp: urllib3.BaseHTTPResponse | None = None
        self._closed = False

    def _open(self) -> urllib3.BaseHTTPResponse:
        headers = {"User-Agent": "funcx-sdk",
                   "Accept": STREAM_TYPE if self.stream else "application/json"}
        tok = self.web.token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        url = f"{self.web.base_url}{self.path}?{urlencode(self.params)}"
        self.web.request_count += 1
        for hook in self.web.request_hooks:  # as WebClient.request: tests and tools see it
            hook("GET", self.path, 0)
        try:
            resp = self.web.pool.request("GET", url, headers=headers, timeout=self.timeout,
                                         redirect=False, preload_content=False)
        except urllib3.exceptions.HTTPError as e:
            tls = self.web._tls_error(e) if _is_tls_failure(e) else None
            if tls is not None:  # never retried: the same handshake fails the same way
                raise tls from None
            raise ServiceUnreachable(self.web.base_url, _reason(e)) from None
        if resp.status >= 400:
            resp.read(cache_content=True)  # the error body, for _api_error
            resp.release_conn()
            raise _api_error(resp)
        return resp

    def __iter__(self) -> Iterator[EventsAnswer | None]:
        resp = self._resp = self._open()
        whole = False  # read to its end: the connection may be reused
        try:
            if self._closed:  # closed while it was being opened
                return
            if not resp.headers.get("Content-Type", "").startswith(STREAM_TYPE):
                data = resp.read()
                whole = True
                yield decode_answer(data)  # one long-poll answer: the stream ends
                return
            try:
                for msg in messages(resp.stream(None)):
                    yield None if msg is None else decode_answer(msg)
                whole = True
            except (urllib3.exceptions.HTTPError, OSError) as e:
                if self._closed:
                    return
                raise ServiceUnreachable(self.web.base_url, _reason(e)) from None
        finally:
            if not whole:  # left early: the rest of the stream is never read
                self._closed = True
                resp.close()
            resp.release_conn()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the stream was left before its end)."""
        return self._closed

    def close(self) -> None:
        """Stop listening, from any thread: a read in progress ends at once."""
        self._closed = True
        resp = self._resp
        if resp is not None:
            try:
                resp.shutdown()
            except Exception:  # noqa: BLE001 - closing what may be closed already
                pass
