"""The funcX wire format for code, arguments and results (see shared/API.md)."""
from funcx.serialize.facade import (
    FunctionCache,
    FuncXSerializer,
    pack_buffers,
    unpack_buffers,
)

__all__ = ["FuncXSerializer", "FunctionCache", "pack_buffers", "unpack_buffers"]
