"""The Open Inference Protocol datatypes and their numpy dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from keel.errors import ProtocolError
from keel.serving.protocols import V2_DATATYPES, datatype_of, dtype_of


@pytest.mark.parametrize("datatype", list(V2_DATATYPES))
def test_every_datatype_maps_to_a_dtype_and_back(datatype: str) -> None:
    assert datatype_of(dtype_of(datatype)) == datatype


def test_the_protocols_thirteen_datatypes_are_all_there() -> None:
    assert set(V2_DATATYPES) == {
        "BOOL",
        *(f"UINT{bits}" for bits in (8, 16, 32, 64)),
        *(f"INT{bits}" for bits in (8, 16, 32, 64)),
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    }
    assert dtype_of("BYTES") == np.dtype(object)


@pytest.mark.parametrize("datatype", ["BF16", "fp32", "STRING", ""])
def test_an_unknown_datatype_is_a_protocol_error_naming_it(datatype: str) -> None:
    with pytest.raises(ProtocolError, match=f"datatype '{datatype}' is not supported"):
        dtype_of(datatype)


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [(">f4", "FP32"), (">i8", "INT64"), ("<U3", "BYTES"), ("S2", "BYTES"), ("O", "BYTES")],
)
def test_byte_order_and_string_dtypes_map_to_their_datatype(dtype: str, datatype: str) -> None:
    assert datatype_of(np.dtype(dtype)) == datatype


@pytest.mark.parametrize("dtype", ["c16", "M8[s]", "m8[s]", "V4"])
def test_a_dtype_with_no_datatype_is_a_protocol_error(dtype: str) -> None:
    with pytest.raises(ProtocolError, match="has no Open Inference Protocol datatype"):
        datatype_of(np.dtype(dtype))
