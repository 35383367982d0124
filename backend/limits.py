"""Server-side rate limits per identity (Flask-Limiter, counters in Redis).

Reads and writes have separate budgets (``FUNCX_RATE_LIMIT_READ`` /
``FUNCX_RATE_LIMIT_WRITE``).  The check runs before the view, so a submit
that is refused with 429 has queued nothing; every 429 carries Retry-After.

Submits also have a budget of *tasks* per identity and a cap on concurrent
submits per identity (fair sharing, below).
"""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app, g, request

from backend.api_errors import ApiError
from funcx.defaults import setting
from funcx.protocol import error_codes

log = logging.getLogger(__name__)
TASKS_SCOPE = "tasks"

READ_METHODS = ["GET", "HEAD"]
WRITE_METHODS = ["POST", "PUT", "DELETE", "PATCH"]


def identity_key() -> str:
    ident = g.get("identity")
    return f"user:{ident.user_id}" if ident is not None else f"ip:{request.remote_addr}"


def register(app: Flask, redis_url: str) -> None:
    if not setting("RATE_LIMIT_ENABLED"):
        return
    from flask_limiter import Limiter

    # swallow_errors: with Redis down, the request goes on to fail cleanly with
    # 503 in the store rather than with a 500 from the limiter
    # no X-RateLimit-* headers on every answer (one more Redis call each); a
    # 429 carries Retry-After (backend/api_errors.py)
    from backend.redis_conn import tls_options

    # the limits package names a Unix socket redis+unix:// (the embedded TLS
    # Redis's local socket); rediss:// gets the service's Redis CA
    uri = "redis+" + redis_url if redis_url.startswith("unix://") else redis_url
    limiter = Limiter(identity_key, app=app, storage_uri=uri, headers_enabled=False,
                      key_prefix="fx:ratelimit", strategy="sliding-window-counter", swallow_errors=True,
                      storage_options={"socket_timeout": 5, "socket_connect_timeout": 2,
                                       **tls_options(redis_url)})
    read, write = str(setting("RATE_LIMIT_READ")), str(setting("RATE_LIMIT_WRITE"))
    for bp in app.blueprints.values():
        if bp.name == "version":
            continue
        # shared: one read and one write budget per identity across every route
        # (a plain ``limit`` keys its scope by route, so each route had its own)
        # (flask-limiter's overloads type a Blueprint call as returning None: it is)
        limiter.shared_limit(read, "read", methods=READ_METHODS,  # type: ignore[call-overload]
                             per_method=False)(bp)
        limiter.shared_limit(write, "write", methods=WRITE_METHODS,  # type: ignore[call-overload]
                             per_method=False)(bp)
    app.extensions["funcx_limiter"] = limiter
    tasks = str(setting("RATE_LIMIT_TASKS")).strip()
    if tasks.lower() not in ("", "off", "none"):
        from limits import parse

        app.extensions["funcx_task_limit"] = (limiter.limiter, parse(tasks))


# ------------------------------------------------------------ fair sharing
# What one identity's submits may take of what every tenant shares (issue 12,
# DESIGN decision 8).  A submit's real cost is its tasks: the submit script
# queues them atomically, and Redis runs nothing else meanwhile (about 15 us
# a task: a 1,000-task chunk holds Redis ~15-20 ms, during which every other
# tenant's requests wait).  A request budget does not bound that; these do:
#
# * ``RATE_LIMIT_TASKS``: tasks per identity per window, each submit costing
#   its task count (sliding window counter in Redis, shared by every web
#   process).  The check before the body is read refuses an identity whose
#   budget is spent without parsing anything; the charge after validation,
#   just before queueing, refuses a submit that does not fit — 429
#   ``RATE_LIMITED`` with the Retry-After after which it would fit, nothing
#   queued.  The default admits a 10,000-task batch at once.
# * ``SUBMIT_CONCURRENCY_PER_IDENTITY``: submits one identity may have in
#   progress in one web process (request threads parsing and validating its
#   bodies); past it, 429 ``RATE_LIMITED`` with Retry-After 1.
_slots: dict[str, int] = {}
_slots_lock = threading.Lock()


@contextmanager
def submit_slot(user: str) -> Iterator[None]:
    """Hold one of the identity's concurrent-submit slots in this process."""
    cap = int(setting("SUBMIT_CONCURRENCY_PER_IDENTITY"))
    with _slots_lock:
        held = _slots.get(user, 0)
        if 0 < cap <= held:
            raise ApiError(429, error_codes.RATE_LIMITED,
                           f"{held} submits of yours are in progress; wait for one to finish "
                           "(retry after the Retry-After seconds: the funcX SDK does)",
                           {"Retry-After": "1"})
        _slots[user] = held + 1
    try:
        yield
    finally:
        with _slots_lock:
            if _slots[user] <= 1:
                del _slots[user]
            else:
                _slots[user] -= 1


def _task_limit():
    """(strategy, item) of the task budget, or None where rate limits are off."""
    return current_app.extensions.get("funcx_task_limit")


def _retry_after(strategy, item, ids: tuple[str, ...], n: int) -> int:
    """Seconds until ``n`` tasks fit the sliding window (at least 1)."""
    w, cap = item.get_expiry(), item.amount
    prev, prev_in, cur, cur_in = strategy.storage.get_sliding_window(item.key_for(*ids), w)
    # weighted count at time d from now: prev * (prev_in - d) / w + cur, until
    # the current window ends; then cur becomes the previous window
    if cur + n <= cap:
        d = prev_in - (cap - n - cur) * w / prev if prev else 0.0
    else:
        end = max(prev_in, cur_in - w)
        d = end + max(0.0, w * (1 - (cap - n) / cur))
    return max(1, min(2 * w, math.ceil(d)))


def _refuse(strategy, item, ids, n: int, what: str) -> ApiError:
    return ApiError(429, error_codes.RATE_LIMITED,
                    f"{what}: the service takes at most {item.amount} tasks per "
                    f"{item.get_expiry()} s from one identity, so others are served too; "
                    "nothing was queued: retry after the Retry-After seconds (the funcX SDK does)",
                    {"Retry-After": str(_retry_after(strategy, item, ids, n))})


def check_task_budget(user: str) -> None:
    """Refuse (429) before the body is read if the identity's task budget is spent."""
    lim = _task_limit()
    if lim is None:
        return
    strategy, item = lim
    ids = ("fx:ratelimit", TASKS_SCOPE, user)
    try:
        ok = strategy.test(item, *ids, cost=1)
        if not ok:
            raise _refuse(strategy, item, ids, 1, "your task budget is spent")
    except ApiError:
        raise
    except Exception as e:  # as swallow_errors: the store fails cleanly later
        log.warning("task budget check failed: %s", type(e).__name__)


def charge_tasks(user: str, n: int) -> None:
    """Charge ``n`` tasks to the identity's budget, or refuse (429, nothing charged)."""
    lim = _task_limit()
    if lim is None or n <= 0:
        return
    strategy, item = lim
    ids, cost = ("fx:ratelimit", TASKS_SCOPE, user), min(n, item.amount)
    try:
        ok = strategy.hit(item, *ids, cost=cost)
        if not ok:
            raise _refuse(strategy, item, ids, cost, f"this submit of {n} tasks does not fit "
                          "what is left of your task budget")
    except ApiError:
        raise
    except Exception as e:
        log.warning("task budget charge failed: %s", type(e).__name__)


# ------------------------------------------------------------- size limits
# FUNCX_MAX_PAYLOAD_BYTES is the documented size of what a user sends: the
# serialized data of one task's arguments (or one function's code), measured
# decoded (funcx.sdk.limits.payload_bytes), so an 8 MB array fits a 10 MB
# limit although base64 makes it ~11 MB on the wire.  The request body cap
# (Flask's MAX_CONTENT_LENGTH) is that limit as encoded: base64's 4 characters
# per 3 bytes, a line break per 57 bytes, escaped in JSON ("\n": 78 characters
# per 57 bytes), plus room for the rest of the request.
BODY_SLACK = 64 * 1024


def payload_limit() -> int:
    """The largest serialized task input or function code, in decoded bytes."""
    return int(setting("MAX_PAYLOAD_BYTES"))


def request_body_limit() -> int:
    """The largest request body: one payload at the limit, as encoded in JSON."""
    return payload_limit() * 78 // 57 + BODY_SLACK


def check_payload(payload: str, what: str) -> None:
    """Refuse (413 TASK_PAYLOAD_TOO_LARGE) ``payload`` whose serialized data is
    over the limit; the message names the setting, this host, and both sizes.
    A payload no longer than the limit as sent is within it: only larger ones
    are decoded to be measured."""
    from funcx.sdk.limits import payload_bytes

    limit = payload_limit()
    if len(payload) <= limit:
        return
    decoded = payload_bytes(payload)
    if decoded > limit:
        raise ApiError(413, error_codes.TASK_PAYLOAD_TOO_LARGE,
                       f"{what} is {decoded} bytes serialized ({len(payload)} bytes encoded as "
                       f"sent), over the service's limit of {limit} bytes "
                       "(FUNCX_MAX_PAYLOAD_BYTES, enforced by the funcX service: set it in the "
                       "environment of `funcx service start` on the service host to raise "
                       "it); or send less per task, e.g. a path the function reads")
