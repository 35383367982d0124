"""One Redis gateway: outside backend/store/ the service names no key and runs
no Redis command or script of its own (DESIGN "Conventions"; RQ's layout)."""
from __future__ import annotations

import re
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[1] / "backend"
#: what the ingester may name: parsing an endpoint id out of a stream name, and
#: the consumer group its acknowledgement goes to
ALLOWED_KEY_USES = {("ingester.py", "keys.endpoint_of"), ("ingester.py", "keys.INGEST_GROUP")}


def _outside_store() -> list[Path]:
    return [p for p in BACKEND.rglob("*.py") if "store" not in p.relative_to(BACKEND).parts]


def test_only_the_store_names_keys():
    found = {(p.name, m.group(0)) for p in _outside_store()
             for m in re.finditer(r"\bkeys\.[A-Za-z_]+", p.read_text())}
    assert found <= ALLOWED_KEY_USES, sorted(found - ALLOWED_KEY_USES)


def test_routes_run_no_redis_command():
    offenders = [f"{p.name}: {line.strip()}" for p in (BACKEND / "routes").glob("*.py")
                 for line in p.read_text().splitlines() if re.search(r"\bredis\(\)\.", line)]
    assert not offenders, offenders


def test_all_lua_lives_in_scripts():
    root = BACKEND.parent
    holders = {p.relative_to(root).as_posix()
               for d in ("backend", "funcx", "endpoint") for p in (root / d).rglob("*.py")
               if "redis.call(" in p.read_text()}
    assert holders == {"backend/store/scripts.py"}


def test_scripts_have_no_placeholders_left_and_inject_definitions():
    from backend.store import scripts
    from funcx.protocol.states import TERMINAL_VALUES

    lua = [v for k, v in vars(scripts).items() if k.isupper() and isinstance(v, str)
           and "redis.call" in v]
    assert len(lua) >= 8
    assert not any("{{" in s for s in lua)
    for state in TERMINAL_VALUES:  # the terminal table is built from the one definition
        assert f"['{state}'] = true" in scripts.APPLY_RESULTS
        assert f"['{state}'] = true" in scripts.FETCH
