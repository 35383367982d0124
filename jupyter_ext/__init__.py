"""Jupyter support: ``%load_ext jupyter_ext`` for the ``%funcx`` / ``%%funcx``
magics, and ipywidgets: ``TaskMonitor`` and ``EndpointPanel``."""
from __future__ import annotations


def load_ipython_extension(ipython) -> None:
    from jupyter_ext.magics import FuncXMagics

    ipython.register_magics(FuncXMagics(ipython))


def __getattr__(name: str):
    if name in ("TaskMonitor", "EndpointPanel"):
        from jupyter_ext import widgets

        return getattr(widgets, name)
    raise AttributeError(name)
