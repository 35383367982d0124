"""HTTP errors as JSON ``{"code", "message"}`` bodies (API.md), never a traceback."""
from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from funcx.protocol import error_codes as codes
from funcx.protocol.error_codes import STORE_FULL

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def bad_request(message: str, code: str = codes.BAD_REQUEST) -> ApiError:
    return ApiError(400, code, message)


def not_found(what: str, ident: str) -> ApiError:
    """404 ``<WHAT>_NOT_FOUND`` (a catalogued code: an uncatalogued ``what`` fails loudly)."""
    return ApiError(404, getattr(codes, f"{what.upper()}_NOT_FOUND"), f"{what} {ident} not found")


def forbidden(message: str) -> ApiError:
    return ApiError(403, codes.FORBIDDEN, message)


def unauthorized(message: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, codes.UNAUTHORIZED, message, {"WWW-Authenticate": "Bearer"})


def too_large(message: str) -> ApiError:
    return ApiError(413, codes.TASK_PAYLOAD_TOO_LARGE, message)


def store_full(e: BaseException) -> bool:
    """Whether ``e`` is Redis refusing a write at ``maxmemory`` (noeviction):
    ``OutOfMemoryError``, or an ``OOM`` error passed on by a script or a
    discarded transaction."""
    import redis

    if isinstance(e, redis.exceptions.OutOfMemoryError):
        return True
    return isinstance(e, redis.exceptions.ResponseError) and "OOM command not allowed" in str(e)


def _discard_unread_body() -> None:
    """Read and drop what is left of the request body (bounded).  An error
    raised before the body was read (413 on its length, 401) leaves it unread,
    and gunicorn then closes the connection after answering keep-alive, so
    the client's next request on it fails as if the service were down."""
    try:
        stream = request.environ.get("wsgi.input")
        left = min(request.content_length or 0, 4 * int(current_app.config["MAX_CONTENT_LENGTH"]))
        if "stream" in request.__dict__:  # the view read (part of) the body: drain only the
            stream = request.stream  # rest, bounded (a raw wsgi.input may block past the end)
        while stream is not None and left > 0:
            chunk = stream.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)
    except Exception:  # noqa: BLE001 - best effort; the answer matters more
        pass


def _body(status: int, code: str, message: str, headers: dict | None = None):
    _discard_unread_body()
    resp = jsonify({"code": code, "message": message, "http_status_code": status})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api(e: ApiError):
        return _body(e.status, e.code, e.message, e.headers)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e):
        limit = app.config.get("MAX_CONTENT_LENGTH")
        return _body(413, codes.TASK_PAYLOAD_TOO_LARGE,
                     f"request body exceeds the service's limit of {limit} bytes (FUNCX_MAX_PAYLOAD_"
                     "BYTES as encoded, enforced by the funcX service); send fewer or smaller "
                     "tasks per request (the funcX SDK splits its batches)")

    @app.errorhandler(429)
    def _rate_limited(e):
        retry = None
        limit = getattr(e, "limit", None)
        if limit is not None:
            retry = str(getattr(limit.limit, "get_expiry", lambda: 60)())
        return _body(429, codes.RATE_LIMITED,
                     f"too many requests ({e.description}); retry after the Retry-After seconds",
                     {"Retry-After": retry or "60"})

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        code = (e.name or "error").upper().replace(" ", "_")
        return _body(e.code or 500, code, e.description or e.name)

    @app.errorhandler(Exception)
    def _internal(e: Exception):
        import redis

        if store_full(e):
            log.warning("redis is full (maxmemory): %s", e)
            return _body(507, STORE_FULL,
                         "the service's store is full, so nothing was written (a submit queued "
                         "nothing); retry later, and tell the service's operator (raise "
                         "FUNCX_REDIS_MAXMEMORY or free space)", {"Retry-After": "60"})
        if isinstance(e, redis.ConnectionError | redis.TimeoutError):
            log.warning("redis unavailable: %s", type(e).__name__)
            return _body(503, codes.SERVICE_UNAVAILABLE, "the service's store is unavailable; retry shortly",
                         {"Retry-After": "2"})
        log.exception("unhandled error")
        return _body(500, codes.INTERNAL_ERROR, "internal error; the service log has details")
