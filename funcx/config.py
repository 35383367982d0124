"""``funcx.config.Config``: the endpoint configuration, under the name the
funcX 0.0.1a5 reference documents it (``from funcx.config import Config``).

The class lives in :mod:`endpoint.config`; this module only re-exports it, and
is imported by nothing in the SDK, so the SDK does not depend on the endpoint.
"""
from __future__ import annotations

from endpoint.config import Config

__all__ = ["Config"]
