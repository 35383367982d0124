"""Functions you can change (issue 16, point 5), against the real service and
endpoint: registering the same content again answers the same id (no
duplicate row), also from another process; new content under a name you own
is that name's next version; names resolve to the latest, ``NAME@N`` to a
version, and older versions stay runnable by id; ``funcx function list``
shows versions.  And the registration warning about module-level names a
source-shipped function would not have where it runs.

Functions sent from this module travel as source code, so the remote ones are
self-contained (imports inside the body, no module globals) -- except the ones
that show the warning's point.
"""
from __future__ import annotations

import json
import json as js  # noqa: I001 - a module-level alias that the warning must name
import os
import subprocess
import sys
import textwrap
import threading
import uuid
import warnings

import pytest

from funcx import FuncXClient, FuncXExecutor
from funcx.errors import FuncxAPIError
from funcx.protocol import keys
from funcx.sdk.remote_globals import MissingGlobalWarning, global_names, missing_globals

WAIT_S = 60
SCALE = 3  # a module-level constant a source-shipped function will not have


def _tag() -> str:
    return uuid.uuid4().hex[:8]


def version_one(x):
    return ("v1", x)


def version_two(x):
    return ("v2", x * 2)


def version_three(x):
    return ("v3", x * 3)


# ------------------------------------------------------- content and versions
def test_same_content_registered_again_is_the_same_function(fxc, redis_client, me):
    name = f"same-{_tag()}"
    first = fxc.register_function_info(version_one, function_name=name)
    again = fxc.register_function_info(version_one, function_name=name)
    assert again["function_uuid"] == first["function_uuid"]
    assert (first["reused"], again["reused"]) == (False, True)
    assert first["version"] == again["version"] == 1
    rows = [f for f in redis_client.smembers(keys.user_functions(me))
            if redis_client.hget(keys.function(f), "function_name") == name]
    assert rows == [first["function_uuid"]]  # one row, not a duplicate
    assert [v["function_uuid"] for v in fxc.function_versions(name)] == [first["function_uuid"]]
    # the name still resolves: nothing is ambiguous
    assert fxc.resolve_function(name) == first["function_uuid"]


def test_other_attributes_make_another_version(fxc):
    name = f"attrs-{_tag()}"
    a = fxc.register_function_info(version_one, function_name=name, description="one")
    b = fxc.register_function_info(version_one, function_name=name, description="two")
    assert a["function_uuid"] != b["function_uuid"] and (a["version"], b["version"]) == (1, 2)


@pytest.fixture(scope="module")
def me(fxc) -> str:
    return fxc.whoami()["user_id"]


def test_new_code_under_a_name_is_its_next_version(fxc, endpoint):
    name = f"fit-{_tag()}"
    v1 = fxc.register_function_info(version_one, function_name=name)
    v2 = fxc.register_function_info(version_two, function_name=name)
    assert (v1["version"], v2["version"]) == (1, 2) and v1["function_uuid"] != v2["function_uuid"]
    assert fxc.resolve_function(name) == v2["function_uuid"]  # the latest
    assert fxc.resolve_function(f"{name}@1") == v1["function_uuid"]
    assert fxc.resolve_function(f"{name}@2") == v2["function_uuid"]
    by_name = fxc.run(5, endpoint_id=endpoint, function_id=name)
    old_by_id = fxc.run(5, endpoint_id=endpoint, function_id=v1["function_uuid"])
    old_by_version = fxc.run(5, endpoint_id=endpoint, function_id=f"{name}@1")
    done = fxc.wait([by_name, old_by_id, old_by_version], timeout=WAIT_S)
    assert done[by_name]["result"] == ("v2", 10)
    assert done[old_by_id]["result"] == done[old_by_version]["result"] == ("v1", 5)
    versions = fxc.function_versions(name)
    assert [(v["version"], v["latest"]) for v in versions] == [(2, True), (1, False)]
    assert fxc.get_function(name)["version"] == 2
    assert fxc.get_function(v1["function_uuid"])["version"] == 1
    with pytest.raises(FuncxAPIError) as ei:
        fxc.resolve_function(f"{name}@7")
    assert ei.value.code == "FUNCTION_NOT_FOUND" and "versions: 2, 1" in str(ei.value)


def test_going_back_to_an_older_version_makes_it_the_latest_again(fxc, endpoint):
    """A (v1), B (v2), then A again: A's content is not v1 reused (the name
    would still mean B) but version 3, which the name now means; A once more
    is version 3 reused."""
    name = f"back-{_tag()}"
    v1 = fxc.register_function_info(version_one, function_name=name)
    v2 = fxc.register_function_info(version_two, function_name=name)
    back = fxc.register_function_info(version_one, function_name=name)
    assert (back["version"], back["reused"]) == (3, False)
    assert back["function_uuid"] not in (v1["function_uuid"], v2["function_uuid"])
    assert fxc.resolve_function(name) == back["function_uuid"]
    tid = fxc.run(4, endpoint_id=endpoint, function_id=name)
    assert fxc.wait([tid], timeout=WAIT_S)[tid]["result"] == ("v1", 4)  # A runs, not B
    again = fxc.register_function_info(version_one, function_name=name)
    assert (again["function_uuid"], again["version"], again["reused"]) == \
        (back["function_uuid"], 3, True)
    assert [v["version"] for v in fxc.function_versions(name)] == [3, 2, 1]


def test_deleting_the_latest_falls_back_and_numbers_are_not_reused(fxc):
    name = f"del-{_tag()}"
    v1 = fxc.register_function(version_one, function_name=name)
    v2 = fxc.register_function(version_two, function_name=name)
    fxc.delete_function(v2)
    assert fxc.resolve_function(name) == v1
    v3 = fxc.register_function_info(version_three, function_name=name)
    assert v3["version"] == 3  # 2 was deleted, but its number is not issued again
    # the deleted content registered again is a new function, not the deleted id
    again = fxc.register_function_info(version_two, function_name=name)
    assert again["function_uuid"] != v2 and again["version"] == 4 and not again["reused"]


def test_unknown_function_name_names_yours(fxc):
    name = f"known-{_tag()}"
    fxc.register_function(version_one, function_name=name)
    with pytest.raises(FuncxAPIError) as ei:
        fxc.resolve_function(name + "x")
    msg = str(ei.value)
    assert ei.value.code == "FUNCTION_NOT_FOUND" and f"did you mean {name!r}" in msg


def test_concurrent_registrations_get_distinct_versions(service, fxc):
    name = f"race-{_tag()}"
    sources = [f"def f(x):\n    return {i}\n" for i in range(6)]
    answers: list[dict] = []
    errors: list[BaseException] = []

    def register(src: str) -> None:
        try:
            ns: dict = {"__name__": "__main__"}
            exec(src, ns)  # noqa: S102 - distinct functions with one name
            c = FuncXClient()
            c.throttling_enabled = False
            answers.append(c.register_function_info(ns["f"], function_name=name))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=register, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(answers) == 6
    assert sorted(a["version"] for a in answers) == [1, 2, 3, 4, 5, 6]
    assert len({a["function_uuid"] for a in answers}) == 6


REGISTER_SCRIPT = textwrap.dedent('''
    import sys
    from funcx import FuncXClient, FuncXExecutor

    def analysis(x):
        """a notebook-style function: shipped by value with dill"""
        return x + 1

    c = FuncXClient()
    with FuncXExecutor(endpoint_id=sys.argv[1], funcx_client=c) as ex:
        fid = ex.register_function(analysis, function_name=sys.argv[2])
        print(fid, ex.submit(analysis, 41).result(timeout=60))
''')


def test_the_executor_reuses_a_registration_across_processes(tmp_path, service, endpoint, fxc):
    script = tmp_path / "run_analysis.py"
    script.write_text(REGISTER_SCRIPT)
    name = f"analysis-{_tag()}"
    outs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, str(script), endpoint, name], capture_output=True,
                           text=True, timeout=120, env=dict(os.environ))
        assert p.returncode == 0, p.stderr
        outs.append(p.stdout.split())
    assert outs[0] == outs[1] and outs[0][1] == "42"  # one function id, both runs
    assert [v["function_uuid"] for v in fxc.function_versions(name)] == [outs[0][0]]


def test_function_list_shows_versions(fxc):
    name = f"listed-{_tag()}"
    v1 = fxc.register_function(version_one, function_name=name)
    v2 = fxc.register_function(version_two, function_name=name)
    from typer.testing import CliRunner

    from funcx_cli.main import app

    runner = CliRunner(env={"COLUMNS": "200"})
    r = runner.invoke(app, ["function", "list", "--format", "json"])
    assert r.exit_code == 0, r.output
    listed = {h["function_uuid"]: h for h in json.loads(r.stdout)}
    assert (listed[v1]["version"], listed[v1]["latest"]) == (1, False)
    assert (listed[v2]["version"], listed[v2]["latest"]) == (2, True)
    r = runner.invoke(app, ["function", "list"])
    assert r.exit_code == 0 and "Version" in r.stdout
    rows = {fid: line for line in r.stdout.splitlines() for fid in (v1, v2) if fid in line}
    assert "2 (latest)" in rows[v2] and "(latest)" not in rows[v1]


def test_function_list_is_yours_even_behind_many_newer_public_functions(fxc, redis_client, me):
    """The service filters by owner: a page of 100 is 100 of yours, not 100
    of everyone's of which yours are the few left after filtering."""
    from backend.store import users

    mine = fxc.register_function(version_one, function_name=f"buried-{_tag()}")
    other = FuncXClient(access_token=users.issue_token(
        redis_client, users.create_user(redis_client, f"publisher-{_tag()}")))
    other.throttling_enabled = False
    theirs = [other.register_function(version_two, function_name=f"pub-{_tag()}", public=True)
              for _ in range(105)]
    try:
        listed = fxc.list_functions(limit=100)
        assert mine in [h["function_uuid"] for h in listed]
        assert not set(theirs) & {h["function_uuid"] for h in listed}
        assert all(h["mine"] for h in listed)
        assert listed.total == len(redis_client.smembers(keys.user_functions(me)))
    finally:
        for fid in theirs:
            other.delete_function(fid)


# ------------------------------------------------------------ globals warning
def uses_module_globals(x):
    return js.dumps({"x": x * SCALE})


def clean(x, depth=0):
    import json as js  # imported inside: exists where it runs
    from math import sqrt

    if depth < 2:
        return clean(x, depth + 1)  # recursion: its own name exists remotely
    return js.dumps([len(str(x)), sqrt(abs(x)), isinstance(x, int), max(1, 2)])


def nested_use():
    import os as operating_system

    def inner():
        return operating_system.sep + textwrap.dedent("  x")

    return inner()


def test_global_names_are_found_in_nested_code():
    assert global_names(uses_module_globals) == ["js", "SCALE"]
    assert "textwrap" in global_names(nested_use)
    assert "operating_system" not in global_names(nested_use)  # a closure, not a global


def test_missing_globals_ignores_builtins_recursion_and_inner_imports():
    assert missing_globals(clean) == []
    assert missing_globals(uses_module_globals) == [
        ("js", "import json as js"),
        ("SCALE", "pass SCALE as an argument (or define it inside the function)")]
    assert missing_globals(nested_use) == [("textwrap", "import textwrap")]


def test_registration_warns_about_module_globals_and_they_do_fail_remotely(fxc, endpoint):
    with pytest.warns(MissingGlobalWarning) as rec:
        fid = fxc.register_function(uses_module_globals, function_name=f"globals-{_tag()}")
    msg = str(rec[0].message)
    assert "js, SCALE" in msg and "import json as js" in msg and "inside the function" in msg
    assert rec[0].filename == __file__  # points at the caller's line
    tid = fxc.run(2, endpoint_id=endpoint, function_id=fid)
    fxc.wait([tid], timeout=WAIT_S)
    with pytest.raises(NameError, match="js"):  # the warning told the truth
        fxc.get_result(tid)


def test_no_warning_for_a_self_contained_function(fxc, endpoint):
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingGlobalWarning)
        fid = fxc.register_function(clean, function_name=f"clean-{_tag()}")
    tid = fxc.run(16, endpoint_id=endpoint, function_id=fid)
    assert json.loads(fxc.wait([tid], timeout=WAIT_S)[tid]["result"]) == [2, 4.0, True, 2]


def test_no_warning_for_a_script_function_shipped_with_its_globals(fxc, endpoint):
    ns: dict = {"__name__": "__main__"}
    exec("import json as js\nSCALE = 3\ndef f(x):\n    return js.dumps(x * SCALE)\n", ns)  # noqa: S102
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingGlobalWarning)
        fid = fxc.register_function(ns["f"], function_name=f"script-{_tag()}")
    tid = fxc.run(2, endpoint_id=endpoint, function_id=fid)
    assert fxc.wait([tid], timeout=WAIT_S)[tid]["result"] == "6"  # dill carried js and SCALE


def test_the_executor_warns_at_submit(endpoint, fxc):
    with FuncXExecutor(endpoint_id=endpoint, funcx_client=fxc) as ex:
        with pytest.warns(MissingGlobalWarning, match="js, SCALE"):
            fut = ex.submit(uses_module_globals, 1)
        with pytest.raises(NameError):
            fut.result(timeout=WAIT_S)


def test_cli_register_warns_on_stderr_and_says_the_version(tmp_path, service):
    src = tmp_path / "analysis_mod.py"
    src.write_text("import json as js\n\ndef fit(x):\n    return js.dumps(x)\n")
    name = f"cli-{_tag()}"
    docs = []
    for _ in range(2):
        p = subprocess.run([sys.executable, "-m", "funcx_cli.main", "function", "register",
                            f"{src}:fit", "--name", name, "--format", "json"],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert p.returncode == 0, p.stderr
        assert p.stderr.startswith("Warning: function 'fit' uses js") and p.stderr.count("\n") == 1
        assert "import json as js" in p.stderr
        docs.append(json.loads(p.stdout))  # stdout holds only the data
    assert docs[0]["function_id"] == docs[1]["function_id"]
    assert [(d["version"], d["reused"]) for d in docs] == [(1, False), (1, True)]
