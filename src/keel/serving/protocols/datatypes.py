"""The Open Inference Protocol tensor datatypes and the numpy dtypes they stand for."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from keel.errors import ProtocolError

# BYTES tensors are object arrays of ``str`` because that is what keel's string
# tensors are (see ``keel.signature.ModelInput``); the codec converts to and
# from UTF-8 at the edge.
V2_DATATYPES: Mapping[str, np.dtype[Any]] = MappingProxyType(
    {
        "BOOL": np.dtype(np.bool_),
        "UINT8": np.dtype(np.uint8),
        "UINT16": np.dtype(np.uint16),
        "UINT32": np.dtype(np.uint32),
        "UINT64": np.dtype(np.uint64),
        "INT8": np.dtype(np.int8),
        "INT16": np.dtype(np.int16),
        "INT32": np.dtype(np.int32),
        "INT64": np.dtype(np.int64),
        "FP16": np.dtype(np.float16),
        "FP32": np.dtype(np.float32),
        "FP64": np.dtype(np.float64),
        "BYTES": np.dtype(np.object_),
    }
)

# Keyed by (kind, itemsize) so that a big-endian or otherwise non-native dtype
# maps to the same datatype as its native twin.
_DATATYPE_BY_KIND: Mapping[tuple[str, int], str] = MappingProxyType(
    {(dtype.kind, dtype.itemsize): name for name, dtype in V2_DATATYPES.items() if name != "BYTES"}
)
_STRING_KINDS = frozenset("OUS")


def dtype_of(datatype: str) -> np.dtype[Any]:
    """The numpy dtype a protocol datatype decodes to; ProtocolError if there is none."""
    dtype = V2_DATATYPES.get(datatype)
    if dtype is None:
        known = ", ".join(V2_DATATYPES)
        raise ProtocolError(f"datatype {datatype!r} is not supported (supported: {known})")
    return dtype


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol datatype a numpy dtype encodes to; str, bytes and object arrays are BYTES."""
    if dtype.kind in _STRING_KINDS:
        return "BYTES"
    datatype = _DATATYPE_BY_KIND.get((dtype.kind, dtype.itemsize))
    if datatype is None:
        raise ProtocolError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return datatype
