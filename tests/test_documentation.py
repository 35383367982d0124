"""The quickstart, tutorial and SDK-guide flows of the funcX documents
(seeds/000 funcX 0.x client docs, 001 funcX 1.x SDK docs, 002 the 0.0.1a5
manual, 003 the Globus Compute SDK guide), as written, against the live service
and endpoint.

The executor document (004) is tests/test_doc_executor.py; the endpoint
``Config`` and ``funcx-endpoint`` items are tests/test_doc_endpoint.py; the
``FuncXClient`` reference signatures, identity and limits are
tests/test_doc_client.py.  Only the endpoint id (the public tutorial endpoint
``4b116d3c-…`` does not exist here) is replaced in the snippets.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from funcx.errors import FuncxError, MaxRequestsExceeded, TaskPending


def run_script(tmp_path: Path, source: str, timeout: float = 180) -> str:
    path = tmp_path / "snippet.py"
    path.write_text(textwrap.dedent(source))
    p = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def offline_ep(fxc):
    """A registered endpoint that no agent serves (tasks stay pending)."""
    eid = fxc.register_endpoint("doc-offline-ep")["endpoint_id"]
    yield eid
    fxc.delete_endpoint(eid)


@pytest.fixture(scope="module")
def other(service, redis_client):
    """A second user, to see what sharing gives them."""
    from backend.store import users
    from funcx import FuncXClient

    uid = users.create_user(redis_client, f"doc-other-{uuid.uuid4().hex[:6]}")
    c = FuncXClient(access_token=users.issue_token(redis_client, uid))
    c.throttling_enabled = False
    return c


# -------------------------------------------------- 002: quickstart, tutorial
def test_quickstart_version_route(service, http):
    """``curl http://dev.funcx.org/api/v1/version``: the 0.0.1a5 ``/v1`` routes
    were removed in funcX 1.x; the version is ``GET /v2/version``, and ``/api/v1``
    answers 404 with the JSON error body."""
    r = http.get(f"{service}/v2/version")
    assert r.status_code == 200 and r.json()["api"]
    for old in ("/api/v1/version", "/v1/version"):
        r = http.get(service + old)
        assert r.status_code == 404
        assert set(r.json()) >= {"code", "message"}


TUTORIAL = '''
from funcx.sdk.client import FuncXClient

fxc = FuncXClient()

def funcx_sum(items):
    return sum(items)

func_uuid = fxc.register_function(funcx_sum,
                                  description="A summation function")
print(func_uuid)

endpoint_uuid = '{ep}' # Public tutorial endpoint

items = [1, 2, 3, 4, 5]

res = fxc.run(items, endpoint_id=endpoint_uuid, function_id=func_uuid)
print(res)

fxc.wait([res])  # the notebook's reader waits between cells; a script says so
print(fxc.get_result(res))
print(fxc.get_function(func_uuid)["description"])
'''


def test_tutorial_notebook_flow(tmp_path, endpoint):
    """002 chapter 3, "funcX Tutorial": register funcx_sum, run it, get_result."""
    func_uuid, task_id, result, description = \
        run_script(tmp_path, TUTORIAL.format(ep=endpoint)).split("\n")[:4]
    assert uuid.UUID(func_uuid) and uuid.UUID(task_id)
    assert result == "15"
    assert description == "A summation function"


TUTORIAL_CELLS = [
    "from funcx.sdk.client import FuncXClient\n\nfxc = FuncXClient()",
    "def funcx_sum(items):\n    return sum(items)",
    'func_uuid = fxc.register_function(funcx_sum,\n'
    '                                  description="A summation function")\nprint(func_uuid)',
    "endpoint_uuid = '{ep}' # Public tutorial endpoint\n\nitems = [1, 2, 3, 4, 5]\n\n"
    "res = fxc.run(items, endpoint_id=endpoint_uuid, function_id=func_uuid)\nprint(res)",
    "fxc.wait([res])  # the reader's pause between cells",
    "fxc.get_result(res)",
]


def test_tutorial_in_a_jupyter_kernel(endpoint, tmp_path):
    """002 chapter 3 is a notebook ("Install Jupyter for Tutorial notebooks"):
    its cells, as printed, in a real Jupyter kernel."""
    import nbformat
    from notebook_kernel import cell_texts, execute

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c.format(ep=endpoint)) for c in TUTORIAL_CELLS]
    texts = cell_texts(execute(nb, tmp_path, tmp_path))
    uuid.UUID(texts[2].strip())
    uuid.UUID(texts[3].strip())
    assert texts[-1].strip() == "15"


# ----------------------------------------------- 000 / 001 / 003: SDK guides
PLATFORM = '''
from funcx.sdk.client import FuncXClient
fxc = FuncXClient()

def platform_func():
  import platform
  return platform.platform()

func_uuid = fxc.register_function(platform_func)

tutorial_endpoint = '{ep}'
task_id = fxc.run(endpoint_id=tutorial_endpoint, function_id=func_uuid)

fxc.wait([task_id])
try:
  print(fxc.get_result(task_id))
except Exception as e:
  print("Exception: {{}}".format(e))

def funcx_hello(firstname, lastname):
  return 'Hello {{}} {{}}'.format(firstname, lastname)

func_id = fxc.register_function(funcx_hello)

task_id = fxc.run("Bob", "Smith", endpoint_id=tutorial_endpoint, function_id=func_id)

fxc.wait([task_id])
try:
  print(fxc.get_result(task_id))
except Exception as e:
  print("Exception: {{}}".format(e))
'''


def test_register_run_and_arguments(tmp_path, endpoint):
    """001/003 "Registering Functions", "Running Functions", "Retrieving Results",
    "Arguments and data"."""
    import platform

    out = run_script(tmp_path, PLATFORM.format(ep=endpoint)).splitlines()
    assert out == [platform.platform(), "Hello Bob Smith"]


def test_get_result_of_a_pending_task_raises(fxc, offline_ep):
    """"This will either return the deserialized result ... or raise an exception
    indicating that the task is still pending"."""
    fid = fxc.register_function(platform_name)
    task_id = fxc.run(endpoint_id=offline_ep, function_id=fid)
    with pytest.raises(TaskPending) as ei:
        fxc.get_result(task_id)
    assert "waiting-for-ep" in str(ei.value) or "received" in str(ei.value)
    assert isinstance(ei.value, Exception)  # the documents catch `Exception`


def fail_with(message):
    raise RuntimeError(message)


def platform_name():
    import platform

    return platform.platform()


def test_get_result_reraises_the_function_exception(fxc, endpoint):
    """"If your function raises an exception, get_result() will reraise it.\""""
    fid = fxc.register_function(fail_with)
    tid = fxc.run("from the docs", endpoint_id=endpoint, function_id=fid)
    fxc.wait([tid])
    with pytest.raises(RuntimeError, match="from the docs"):
        fxc.get_result(tid)


def test_results_stay_retrievable_from_a_new_session(fxc, endpoint):
    """The documents warn that a new session cannot get a result an earlier one
    fetched; here results stay retrievable (by their owner) until they expire."""
    from funcx import FuncXClient

    fid = fxc.register_function(platform_name)
    tid = fxc.run(endpoint_id=endpoint, function_id=fid)
    fxc.wait([tid])
    first = fxc.get_result(tid)
    assert FuncXClient().get_result(tid) == first


def sharing_demo():
    return "shared"


def test_sharing_public_and_group(fxc, other):
    """"Sharing Functions": ``public=True`` lets anyone run it; ``group=<id>``
    lets the group's members run it ("Upon execution, funcX will check group
    membership"); others are refused.  ``other`` runs them on an endpoint of
    its own (no agent serves it: being accepted is what is checked)."""
    their_ep = other.register_endpoint("doc-other-ep")["endpoint_id"]
    try:
        public = fxc.register_function(sharing_demo, description="My function", public=True)
        private = fxc.register_function(sharing_demo, description="My function")
        uuid.UUID(other.run(endpoint_id=their_ep, function_id=public))
        with pytest.raises(FuncxError):
            other.run(endpoint_id=their_ep, function_id=private)

        group_id = fxc.create_group("doc-sharing")
        grouped = fxc.register_function(sharing_demo, description="My function",
                                        group=group_id)
        with pytest.raises(FuncxError):  # not a member yet
            other.run(endpoint_id=their_ep, function_id=grouped)
        fxc.add_group_member(group_id, other.whoami()["user_id"])
        uuid.UUID(other.run(endpoint_id=their_ep, function_id=grouped))
    finally:
        other.delete_endpoint(their_ep)


def my_function_for_search():
    return 1


def test_discovering_functions(fxc):
    """"Discovering Functions": ``search_function("my function", offset=0, limit=5)``
    and ``print(search_results)``."""
    fid = fxc.register_function(my_function_for_search, description="my function for the docs")
    search_results = fxc.search_function("my function", offset=0, limit=5)
    assert fid in [h["function_uuid"] for h in search_results]
    assert len(list(search_results)) <= 5
    assert "my_function_for_search" in str(search_results)


def square(x):
    return x * x


def test_batching_flow_and_result_shape(fxc, endpoint, offline_ep):
    """001/003 "Batching": ``batch.add(x, endpoint_id=..., function_id=...)``;
    ``batch_run`` returns the task ids in order; ``get_batch_result`` returns a
    dict by task id with ``pending``, ``status``, ``result``, ``completion_t``."""
    func_id = fxc.register_function(square)
    tutorial_endpoint = endpoint
    batch = fxc.create_batch()
    for x in range(0, 5):
        batch.add(x, endpoint_id=tutorial_endpoint, function_id=func_id)
    batch_res = fxc.batch_run(batch)
    assert isinstance(batch_res, list) and len(batch_res) == 5
    fxc.wait(batch_res)
    results = fxc.get_batch_result(batch_res)
    assert list(results) == batch_res
    assert [results[t]["result"] for t in batch_res] == [0, 1, 4, 9, 16]
    for doc in results.values():
        assert doc["pending"] is False and doc["status"] == "success"
        assert float(doc["completion_t"]) > 0

    waiting = fxc.create_batch()
    waiting.add(1, endpoint_id=offline_ep, function_id=func_id)
    (tid,) = fxc.batch_run(waiting)
    doc = fxc.get_batch_result([tid])[tid]
    assert doc["pending"] is True and doc["status"] in ("received", "waiting-for-ep")
    assert "result" not in doc


def test_client_throttling_as_documented(service):
    """"Client Throttling": at most 20 requests every 10 s (funcX 1.x; the 0.x
    documents say 5 every 5 s — the later generation wins), raising
    ``MaxRequestsExceeded``; ``fxc.throttling_enabled = False`` lifts it."""
    from funcx import FuncXClient

    fxc = FuncXClient()
    with pytest.raises(MaxRequestsExceeded):
        for _ in range(25):
            fxc.get_version()
    fxc = FuncXClient()
    fxc.throttling_enabled = False
    for _ in range(25):
        fxc.get_version()
    assert fxc.throttling_enabled is False


def in_a_container():
    return "ok"


def test_containers_flow(fxc):
    """"Register containers and execution environments": ``register_container``
    (location, container_type, name, description), ``get_container(uuid, type)``
    and ``register_function(..., container_uuid=...)``."""
    cid = fxc.register_container("docker://python:3.11", "docker", name="doc-py",
                                 description="from the docs")
    uuid.UUID(cid)
    got = fxc.get_container(cid, "docker")
    assert got["location"] == "docker://python:3.11"
    fid = fxc.register_function(in_a_container, container_uuid=cid)
    assert fxc.get_function(fid).get("container_uuid") == cid


def test_force_login_is_accepted(service):
    """``FuncXClient(force_login=True)``: re-authenticates (here: re-reads the
    stored token) and works."""
    from funcx import FuncXClient

    fxc = FuncXClient(force_login=True)
    assert fxc.whoami()["user_id"]


# ------------------------------------------------ 002: funcx.serialize reference
def test_serializer_reference():
    """``funcx.serialize.FuncXSerializer``: serialize / deserialize /
    pack_buffers / unpack_buffers / unpack_and_deserialize."""
    from funcx.serialize import FuncXSerializer

    fxs = FuncXSerializer()
    data = {"a": [1, 2.5, "x"], "b": None}
    s = fxs.serialize(data)
    assert isinstance(s, str) and fxs.deserialize(s) == data
    packed = fxs.pack_buffers([fxs.serialize(1), fxs.serialize("two")])
    assert fxs.unpack_buffers(packed) == [fxs.serialize(1), fxs.serialize("two")]
    assert fxs.unpack_and_deserialize(packed) == [1, "two"]
    fn = fxs.deserialize(fxs.serialize(square))
    assert fn(7) == 49


def test_serializer_concretes_and_base_of_0_0_1a5():
    """``funcx.serialize.concretes`` (code_pickle, code_text_dill,
    code_text_inspect, json_base64, pickle_base64) and ``funcx.serialize.base``
    (DeserializationError, SerializerError, RemoteExceptionWrapper.reraise,
    fxPicker_shared.check / chomp / identifier) under their 0.0.1a5 names; the
    wire identifiers are funcX 1.x's, so their output runs on any endpoint."""
    from funcx.serialize import FuncXSerializer, base, concretes

    fxs = FuncXSerializer()
    for cls in (concretes.json_base64, concretes.pickle_base64):
        m = cls()
        s = m.serialize({"k": [1, 2]})
        m.check(s)  # raises if not its own
        assert m.deserialize(s) == {"k": [1, 2]}
        assert fxs.deserialize(s) == {"k": [1, 2]}
        assert s.startswith(m.identifier) and m.chomp(s) == s[len(m.identifier):]
    for cls in (concretes.code_pickle, concretes.code_text_dill, concretes.code_text_inspect):
        m = cls()
        s = m.serialize(square)
        assert m.deserialize(s)(5) == 25
        assert fxs.deserialize(s)(6) == 36
    with pytest.raises(base.DeserializationError):
        concretes.json_base64().check("zz\nnot mine")
    assert issubclass(base.DeserializationError, Exception)
    try:
        raise KeyError("remote")
    except KeyError:
        wrapped = base.RemoteExceptionWrapper(*sys.exc_info())
    with pytest.raises(KeyError, match="remote"):
        wrapped.reraise()
    assert base.SerializerError("why").reason == "why"


# --------------------------------------------- 002: funcx.sdk.utils reference
def test_sdk_utils_throttling_path():
    """``funcx.sdk.utils.throttling``: the exceptions under their 0.0.1a5 path,
    with the funcX 1.x limits."""
    from funcx.sdk.utils import throttling

    assert issubclass(throttling.MaxRequestsExceeded, throttling.ThrottlingException)
    assert issubclass(throttling.MaxRequestSizeExceeded, throttling.ThrottlingException)
    assert throttling.MaxRequestsExceeded is MaxRequestsExceeded
    assert throttling.DEFAULT_MAX_REQUESTS == 20
    assert throttling.DEFAULT_MAX_REQUEST_SIZE == 5 * 1024 * 1024


def test_sdk_utils_futures_funcx_future(fxc, endpoint):
    """``funcx.sdk.utils.futures.FuncXFuture(client, task_id, ping_interval)``:
    a future of a task submitted with ``run``; ``ping_interval`` is accepted
    with one warning (results are pushed, not polled)."""
    import warnings

    from funcx.sdk.utils import futures

    fid = fxc.register_function(square)
    fid_fail = fxc.register_function(fail_with)
    futures._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fut = futures.FuncXFuture(fxc, fxc.run(9, endpoint_id=endpoint, function_id=fid), 0.5)
        bad = futures.FuncXFuture(fxc, fxc.run("boom", endpoint_id=endpoint,
                                               function_id=fid_fail), 0.5)
    assert len([w for w in caught if "ping_interval" in str(w.message)]) == 1
    assert fut.result(timeout=60) == 81
    with pytest.raises(RuntimeError, match="boom"):
        bad.result(timeout=60)
    assert fut.running() is False


def test_service_address_in_the_0x_spelling(service):
    """The 0.x reference's ``funcx_service_address='https://…/v1'``: the ``/v1``
    suffix names the service's base URL (the client adds its own versions)."""
    from funcx import FuncXClient

    for spelling in (service + "/v1", service + "/v1/", service + "/v2"):
        fxc = FuncXClient(funcx_service_address=spelling)
        assert fxc.funcx_service_address == service
        assert fxc.whoami()["user_id"]


def test_endpoint_stop_twice_is_harmless(service, endpoint):
    """002 §2.5: "Run the funcx-endpoint stop command twice to ensure that the
    endpoint is shutdown": a second ``stop`` of a stopped endpoint succeeds."""
    exe = str(Path(sys.executable).with_name("funcx-endpoint"))
    name = f"doc-stop-{uuid.uuid4().hex[:6]}"
    p = subprocess.run([exe, "configure", name], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    for _ in range(2):
        p = subprocess.run([exe, "stop", name], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "not running" in p.stdout + p.stderr


# ------------------------------------------------------ the README's table
def test_readme_compatibility_table_names_real_tests_and_counts_right():
    """Every test the README's compatibility table names exists, every row has
    one of the three verdicts, and the closing count matches the rows."""
    import re

    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text()
    start = text.index("## Compatibility with the funcX documentation\n")
    section = text[start:text.index("\n## ", start + 10)]
    modules = {"doc": "test_documentation.py", "doc_exec": "test_doc_executor.py",
               "doc_client": "test_doc_client.py", "doc_ep": "test_doc_endpoint.py",
               "doc_pkg": "test_doc_package.py"}
    rows = [line for line in section.splitlines() if line.startswith("| ")
            and not line.startswith("| documented")]
    counts = {"supported": 0, "accepted, warned": 0, "not supported": 0}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        verdict = next((v for v in counts if cells[1].startswith(v)), None)
        assert verdict, row
        counts[verdict] += 1
        current = None
        for ref in re.findall(r"`([^`]+)`", cells[2]):
            if "::" in ref:
                mod, name = ref.split("::")
                current = root / "tests" / modules[mod] if mod in modules else root / mod
            elif ref.endswith(".py"):
                assert (root / ref).exists(), ref
                continue
            else:
                name = ref
            assert current is not None and current.exists(), (row, ref)
            assert re.search(rf"^def {re.escape(name)}\(", current.read_text(), re.M), \
                f"{ref} (in {current.name}) is not a test"
    m = re.search(r"\*\*Count\.\*\* (\d+) rows were checked: (\d+) supported, (\d+) accepted "
                  r"with a warning and (\d+) not supported", section)
    assert m, "the section has no closing count"
    assert [int(x) for x in m.groups()] == [len(rows), counts["supported"],
                                            counts["accepted, warned"], counts["not supported"]]
