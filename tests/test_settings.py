"""The settings table: one home for every tunable, documented once."""
from __future__ import annotations

import re
from pathlib import Path

from funcx import defaults

ROOT = Path(__file__).resolve().parents[1]


def test_readme_settings_table_is_the_generated_one():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert m, "the README has no generated settings table"
    assert m.group(1).strip() == defaults.markdown().strip(), \
        "README settings table is stale: paste `python -m funcx.defaults` into it"


def test_every_setting_is_documented_and_typed():
    for s in defaults.SETTINGS.values():
        assert s.doc and s.group, s.name
        assert s.type in ("str", "int", "float", "bool"), s.name
        assert s.env == f"FUNCX_{s.name}"


def test_environment_wins_and_is_cast_to_the_default_type(monkeypatch):
    monkeypatch.setenv("FUNCX_AGENT_WRITE_MAX", "7")
    monkeypatch.setenv("FUNCX_LONGPOLL_MAX_S", "2.5")
    monkeypatch.setenv("FUNCX_RATE_LIMIT_ENABLED", "no")
    assert defaults.setting("AGENT_WRITE_MAX") == 7
    assert defaults.setting("LONGPOLL_MAX_S") == 2.5
    assert defaults.setting("RATE_LIMIT_ENABLED") is False
    monkeypatch.setenv("FUNCX_AGENT_WRITE_MAX", "")
    assert defaults.setting("AGENT_WRITE_MAX") == defaults.DEFAULTS["AGENT_WRITE_MAX"]


def test_every_setting_is_read_somewhere():
    """A tunable nobody reads is dead; one read under a name not in the table fails at once."""
    sources = "\n".join(p.read_text() for d in ("funcx", "backend", "endpoint", "funcx_cli",
                                                "jupyter_ext")
                        for p in (ROOT / d).rglob("*.py") if p.name != "defaults.py")
    unread = [n for n in defaults.SETTINGS
              if f'"{n}"' not in sources and f"'{n}'" not in sources
              and f"FUNCX_{n}" not in sources and n != "HOME"]
    assert not unread, f"settings nobody reads: {unread}"
    read = set(re.findall(r"setting\([\"']([A-Z0-9_]+)[\"']\)", sources))
    assert read <= set(defaults.SETTINGS), f"unknown settings read: {read - set(defaults.SETTINGS)}"
