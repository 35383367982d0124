"""``funcx.set_stream_logger`` and ``funcx.set_file_logger``, as the funcX
0.0.1a5 package reference documents them: add a handler to the ``funcx``
logger (or ``name``) at ``level`` (default DEBUG) with ``format_string``."""
from __future__ import annotations

import logging

DEFAULT_FORMAT = "%(asctime)s %(name)s:%(lineno)d [%(levelname)s] %(message)s"


def _attach(handler: logging.Handler, name: str, level: int, format_string: str | None) -> None:
    logger = logging.getLogger(name)
    logger.setLevel(level)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(format_string or DEFAULT_FORMAT))
    logger.addHandler(handler)


def set_stream_logger(name: str = "funcx", level: int = logging.DEBUG,
                      format_string: str | None = None) -> None:
    """Log ``name`` (and its children) to standard error."""
    _attach(logging.StreamHandler(), name, level, format_string)


def set_file_logger(filename: str, name: str = "funcx", level: int = logging.DEBUG,
                    format_string: str | None = None) -> None:
    """Log ``name`` (and its children) to ``filename`` (appended)."""
    _attach(logging.FileHandler(filename), name, level, format_string)
