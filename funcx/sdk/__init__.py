"""The funcX SDK; ``from funcx.sdk import ShellFunction, MPIFunction`` as in
``globus_compute_sdk`` (the client and executor live in their own modules)."""
from __future__ import annotations

__all__ = ["MPIFunction", "ShellFunction", "ShellResult"]


def __getattr__(name: str):
    # lazy: importing a submodule of funcx.sdk stays cheap
    if name in __all__:
        from funcx.sdk import shell_function

        return getattr(shell_function, name)
    raise AttributeError(name)
