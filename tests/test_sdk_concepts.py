"""The concepts the SDK owns, which the CLI and the magics only call and format:
one submit path that splits batches over the service's cap, group progress,
login with a token, status colours and error text, and the error-code catalogue
mapped to typed exceptions."""
from __future__ import annotations

import ast
import json
import uuid
from pathlib import Path

import pytest

from funcx import FuncXClient, FuncXExecutor
from funcx.defaults import setting
from funcx.errors import (
    BadRequest,
    FuncxAPIError,
    NotFound,
    QuotaExceeded,
    RateLimited,
    RequestTooLarge,
    ResourceSpecificationError,
    ServiceUnavailable,
    StoreFull,
    TaskExecutionFailed,
    Unauthorized,
    api_error,
)
from funcx.protocol import error_codes
from funcx.sdk.batch import Batch
from funcx.sdk.progress import GroupProgress
from funcx.sdk.render import error_text, status_color, status_terminal_color
from funcx.sdk.web_client import WebClient

ROOT = Path(__file__).resolve().parent.parent


def square(x):
    return x * x


def negate(x):
    return -x


@pytest.fixture(scope="module")
def fns(fxc) -> dict[str, str]:
    return {"square": fxc.register_function(square), "negate": fxc.register_function(negate)}


class SubmitSpy:
    """Wraps a WebClient's ``request``: records each submit's task count and key."""

    def __init__(self, web: WebClient, monkeypatch, fail_on: int | None = None):
        self.submits: list[tuple[int, str]] = []
        self.fail_on = fail_on
        original = web.request

        def request(method, path, **kw):
            if path.endswith("/submit"):
                if self.fail_on is not None and len(self.submits) == self.fail_on:
                    raise api_error(503, error_codes.SERVICE_UNAVAILABLE, "injected")
                n = sum(len(v) for v in kw["json_body"]["tasks"].values())
                self.submits.append((n, kw["headers"]["Idempotency-Key"]))
            return original(method, path, **kw)

        monkeypatch.setattr(web, "request", request)


def _client() -> FuncXClient:
    c = FuncXClient()
    c.throttling_enabled = False
    return c


# ------------------------------------------------------------ one submit path
def test_cap_defaults_to_the_setting(fxc):
    assert fxc.max_tasks_per_submit == int(setting("MAX_TASKS_PER_SUBMIT"))


def test_cap_read_from_the_service_version(service, monkeypatch):
    original = WebClient.request

    def request(self, method, path, **kw):
        out = original(self, method, path, **kw)
        return {**out, "max_tasks_per_submit": 7} if path == "/v2/version" else out

    monkeypatch.setattr(WebClient, "request", request)
    assert FuncXClient().max_tasks_per_submit == 7


def test_batch_over_the_cap_is_split_with_a_key_per_chunk(endpoint, fns, monkeypatch):
    c = _client()
    c.max_tasks_per_submit = 3
    spy = SubmitSpy(c.web_client, monkeypatch)
    batch = c.create_batch()
    for i in range(10):  # two functions, interleaved: ids still come back in order
        batch.add(i, endpoint_id=endpoint, function_id=fns["square" if i % 2 else "negate"])
    ids = c.batch_run(batch)
    assert [n for n, _ in spy.submits] == [3, 3, 3, 1]
    assert len({k for _, k in spy.submits}) == 4  # one Idempotency-Key per chunk
    assert len(set(ids)) == 10
    docs = c.wait(ids, timeout=60)
    assert [docs[t]["result"] for t in ids] == [i * i if i % 2 else -i for i in range(10)]


def test_submit_tasks_reports_each_chunk_before_a_later_one_fails(endpoint, fns, monkeypatch):
    c = _client()
    c.max_tasks_per_submit = 2
    SubmitSpy(c.web_client, monkeypatch, fail_on=1)
    seen: list[tuple[int, list[str]]] = []
    payload = c.fx_serializer.serialize_payload((4,), {})
    with pytest.raises(ServiceUnavailable):
        c.submit_tasks(endpoint, [(fns["square"], payload)] * 4,
                       on_chunk=lambda start, ids: seen.append((start, ids)))
    assert [(start, len(ids)) for start, ids in seen] == [(0, 2)]
    docs = c.wait(seen[0][1], timeout=60)  # the first chunk was queued and runs
    assert [d["result"] for d in docs.values()] == [16, 16]


def test_executor_submits_through_the_client_and_splits(fxc, endpoint, monkeypatch):
    c = _client()
    c.max_tasks_per_submit = 4
    calls = []
    original = c.submit_tasks

    def submit_tasks(*args, **kw):
        calls.append(len(args[1]))
        return original(*args, **kw)

    monkeypatch.setattr(c, "submit_tasks", submit_tasks)
    with FuncXExecutor(endpoint_id=endpoint, client=c, batch_size=100) as ex:
        spy = SubmitSpy(ex._submit_web, monkeypatch)
        futures = [ex.submit(square, i) for i in range(10)]
        assert [f.result(timeout=60) for f in futures] == [i * i for i in range(10)]
    assert sum(calls) == 10  # every task went through FuncXClient.submit_tasks
    assert sum(n for n, _ in spy.submits) == 10 and all(n <= 4 for n, _ in spy.submits)
    assert len({k for _, k in spy.submits}) == len(spy.submits)
    assert ex.task_count_submitted == 10


def test_batch_by_endpoint_keeps_the_order():
    b = Batch()
    for i, ep in enumerate(["a", "b", "a", "a", "b"]):
        b.add(i, endpoint_id=ep, function_id="f")
    assert b.by_endpoint() == {"a": [0, 2, 3], "b": [1, 4]}


# ---------------------------------------------------------------- error codes
def test_every_mapped_code_is_in_the_catalogue_and_typed():
    from funcx.errors import API_ERRORS

    catalogue = {v for k, v in vars(error_codes).items() if k.isupper() and isinstance(v, str)}
    assert set(API_ERRORS) <= catalogue
    assert error_codes.NOT_HTTP <= catalogue and not error_codes.NOT_HTTP & set(API_ERRORS)
    # the SDK's own codes, a task's failure set by its endpoint (its details.error_code
    # and its exception's .code) and an endpoint's status reports are never HTTP answers
    service_codes = catalogue - error_codes.NOT_HTTP
    assert service_codes <= set(API_ERRORS)  # every service code has a type
    for code, cls in API_ERRORS.items():
        err = api_error(400, code, "m", {"code": code})
        assert type(err) is cls and isinstance(err, FuncxAPIError)
        assert (err.http_status, err.code, err.message) == (400, code, "m")


@pytest.mark.parametrize("status,code,cls", [
    (404, error_codes.TASK_NOT_FOUND, NotFound),
    (404, error_codes.CONTAINER_NOT_FOUND, NotFound),
    (404, "WIDGET_NOT_FOUND", NotFound),  # not catalogued: typed by its status
    (401, error_codes.UNAUTHORIZED, Unauthorized),
    (413, error_codes.TOO_MANY_TASKS, RequestTooLarge),
    (429, error_codes.QUOTA_QUEUED_TASKS, QuotaExceeded),
    (429, error_codes.RATE_LIMITED, RateLimited),
    (400, error_codes.RESOURCE_SPEC_OVER_LIMIT, ResourceSpecificationError),  # a BadRequest
    (507, error_codes.STORE_FULL, StoreFull),  # a QuotaExceeded
    (507, "SOME_OTHER_FULL", StoreFull),  # typed by its status
    (418, "TEAPOT", FuncxAPIError),
])
def test_api_error_types(status, code, cls):
    assert type(api_error(status, code, "m")) is cls


def test_service_errors_arrive_typed(fxc):
    with pytest.raises(NotFound) as ei:
        fxc.get_task(str(uuid.uuid4()))
    assert ei.value.code == error_codes.TASK_NOT_FOUND and ei.value.http_status == 404
    with pytest.raises(BadRequest):
        fxc.get_task("not-a-uuid")


def test_no_literal_error_codes_in_sdk_cli_and_magics():
    codes = {v for k, v in vars(error_codes).items() if k.isupper() and isinstance(v, str)}
    files = [*(ROOT / "funcx" / "sdk").glob("*.py"), ROOT / "funcx" / "errors.py",
             *(ROOT / "funcx_cli").glob("*.py"), *(ROOT / "jupyter_ext").glob("*.py")]
    found = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Constant) and node.value in codes:
                found.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not found, found


# ------------------------------------------------------------- group progress
def test_group_progress_folds_rows_and_pushed_documents():
    p = GroupProgress()
    assert p.all_done and not p.finished  # nothing to wait for, nothing finished
    p.load([{"task_id": "a", "status": "waiting-for-ep", "created_at": 1},
            {"task_id": "b", "status": "running", "created_at": 2}])
    assert (p.total, p.done, p.all_done) == (2, 0, False)
    p.apply([{"task_id": "a", "status": "success", "completion_t": 5},
             {"task_id": "c", "status": "failed", "completion_t": 4}])
    assert p.summary() == {"total": 3, "done": 2, "success": 1, "running": 1, "failed": 1}
    assert [r["task_id"] for r in p.latest(2)] == ["a", "c"]
    p.apply([{"task_id": "b", "status": "cancelled"}])
    assert p.finished and p.all_done


def test_group_progress_follows_pushed_completions():
    class Client:
        def list_tasks(self, task_group_id, limit):
            assert task_group_id == "g"
            return [{"task_id": "a", "status": "running"}, {"task_id": "b", "status": "running"}]

        def watch_task_group(self, task_group_id):
            yield [{"task_id": "a", "status": "success"}]
            yield [{"task_id": "b", "status": "failed"}]
            raise AssertionError("followed past the end")

    p = GroupProgress.of(Client(), "g")
    seen = []
    for state in p.follow(Client(), "g"):
        seen.append(state.done)
        if state.all_done:
            break
    assert seen == [1, 2]


# ------------------------------------------------------- colours and error text
def test_status_colours_one_table():
    assert status_color("success") == "#2e7d32" and status_color("failed") == "#c62828"
    assert status_color("waiting-for-ep") == "#6d6d6d"
    assert status_color(None, "inherit") == "inherit"
    assert status_terminal_color("success") == "green"
    assert status_terminal_color("waiting-for-ep") is None


def test_error_text_prefers_the_remote_traceback():
    assert error_text(TaskExecutionFailed("Traceback ...\nValueError: x\n\n")) \
        == "Traceback ...\nValueError: x"
    exc = ZeroDivisionError("division by zero")
    assert error_text(exc) == "ZeroDivisionError: division by zero"
    exc.remote_traceback = "Traceback (remote)\nZeroDivisionError: division by zero\n"
    assert error_text(exc) == "Traceback (remote)\nZeroDivisionError: division by zero"


# ------------------------------------------------------------ login with token
def test_login_with_token_stores_only_an_accepted_token(service, token, tmp_path, monkeypatch):
    from funcx.home import credentials_path
    from funcx.sdk.login import login_with_token

    monkeypatch.setenv("FUNCX_HOME", str(tmp_path))
    with pytest.raises(Unauthorized):
        login_with_token(service, "fx_not_a_token")
    assert not credentials_path().exists()
    me = login_with_token(service, token)
    assert me["service"] == service and me["user_id"]
    stored = json.loads(credentials_path().read_text())
    assert stored["token"] == token and stored["user_id"] == me["user_id"]
    assert credentials_path().stat().st_mode & 0o077 == 0


# ---------------------------------------------------------------------- demo
def test_demo_lives_beside_the_cli():
    import funcx_cli.demo

    assert callable(funcx_cli.demo.run_demo)
    assert not (ROOT / "backend" / "demo.py").exists()
