"""The funcX wire format for code, arguments and results (see shared/API.md),
and the strategies a caller may choose (Globus Compute's names)."""
from funcx.serialize.combos import AllCodeStrategies, AllDataStrategies, CombinedCode
from funcx.serialize.facade import (
    ComputeSerializer,
    FunctionCache,
    FuncXSerializer,
    pack_buffers,
    unpack_buffers,
)
from funcx.serialize.strategies import (
    DillCode,
    DillCodeSource,
    DillCodeTextInspect,
    DillDataBase64,
    JSONData,
    PureSourceDill,
    PureSourceTextInspect,
    Strategy,
)

#: Globus Compute's name of the strategy base class
SerializationStrategy = Strategy

__all__ = ["AllCodeStrategies", "AllDataStrategies", "CombinedCode", "ComputeSerializer",
           "DillCode", "DillCodeSource", "DillCodeTextInspect", "DillDataBase64",
           "FuncXSerializer", "FunctionCache", "JSONData", "PureSourceDill",
           "PureSourceTextInspect", "SerializationStrategy", "Strategy", "pack_buffers",
           "unpack_buffers"]
