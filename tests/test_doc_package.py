"""The funcX 0.0.1a5 package reference's module-level helpers, as documented:
``funcx.set_stream_logger``, ``funcx.set_file_logger`` and ``funcx.sdk.config``."""
from __future__ import annotations

import json
import logging
import stat

import pytest


def test_set_file_logger_as_documented(tmp_path):
    import funcx

    path = tmp_path / "funcx.log"
    funcx.set_file_logger(str(path), name="funcx.doctest", level=logging.DEBUG)
    logging.getLogger("funcx.doctest.child").debug("hello from the child")
    for h in logging.getLogger("funcx.doctest").handlers:
        h.flush()
    assert "hello from the child" in path.read_text()
    assert "[DEBUG]" in path.read_text()


def test_set_stream_logger_as_documented(capsys):
    import funcx

    funcx.set_stream_logger(name="funcx.doctest2", level=logging.INFO, format_string="%(message)s!")
    logging.getLogger("funcx.doctest2").info("streamed")
    logging.getLogger("funcx.doctest2").debug("below the level")
    err = capsys.readouterr().err
    assert "streamed!" in err and "below the level" not in err


def test_sdk_config_options_round_trip(tmp_path, monkeypatch):
    from funcx.sdk import config

    monkeypatch.setenv("FUNCX_HOME", str(tmp_path / "home"))
    assert config.lookup_option("funcx_service_address") is None
    config.write_option("funcx_service_address", "https://svc.example.org")
    assert config.lookup_option("funcx_service_address") == "https://svc.example.org"
    f = tmp_path / "home" / "sdk_options.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert config.remove_option("funcx_service_address") == "https://svc.example.org"
    assert config.lookup_option("funcx_service_address") is None
    assert json.loads(f.read_text()) == {}


def test_sdk_config_login_check_and_printing(fxc, capsys, tmp_path, monkeypatch):
    from funcx.errors import FuncxError
    from funcx.sdk import config

    assert config.check_logged_in() is True  # the session's stored token
    config.format_output({"a": [1, 2]})
    config.safeprint("plain")
    out = capsys.readouterr().out
    assert json.loads(out[: out.rindex("}") + 1]) == {"a": [1, 2]} and "plain" in out
    with pytest.raises(FuncxError, match="issues its own tokens"):
        config.internal_auth_client()
    monkeypatch.setenv("FUNCX_HOME", str(tmp_path / "nobody"))  # no token stored there
    monkeypatch.setenv("FUNCX_SERVICE_ADDRESS", fxc.funcx_service_address)
    assert config.check_logged_in() is False
