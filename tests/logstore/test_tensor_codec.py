"""Tensors to JSON text and back: every dtype the log takes comes back as it went in."""

from __future__ import annotations

from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import numpy.typing as npt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keel.logstore.tensor_codec import decode_tensors, encode_tensors

NUMERIC = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(sizes=(16, 32, 64)),
    hnp.unicode_string_dtypes(max_len=4),
)


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, npt.NDArray[Any]]:
    names = draw(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=3, unique=True))
    return {
        name: draw(
            hnp.arrays(
                NUMERIC,
                hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
                elements={"allow_nan": False, "allow_infinity": False},
            )
        )
        for name in names
    }


@given(tensors())
def test_tensors_round_trip_with_dtype_shape_and_values(
    written: dict[str, npt.NDArray[Any]],
) -> None:
    read = decode_tensors(encode_tensors(written))

    assert read.keys() == written.keys()
    for name, array in written.items():
        assert read[name].dtype == array.dtype
        assert read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)


def test_the_text_is_plain_json_a_person_can_read() -> None:
    text = encode_tensors({"label": np.array(["cat", "dog"], dtype=object)})

    assert orjson.loads(text) == {
        "label": {"dtype": "object", "shape": [2], "data": ["cat", "dog"]}
    }


def test_non_native_byte_order_and_numpy_scalars_in_object_arrays_are_written() -> None:
    written = {
        "big_endian": np.array([1, 2], dtype=">i4"),
        "mixed": np.array([np.float32(0.5), b"raw", None], dtype=object),
    }

    read = decode_tensors(encode_tensors(written))

    np.testing.assert_array_equal(read["big_endian"], [1, 2])
    assert read["mixed"].tolist() == [0.5, "raw", None]


def test_infinity_comes_back_as_nan_because_json_has_neither() -> None:
    read = decode_tensors(encode_tensors({"x": np.array([np.inf, -np.inf, np.nan, 1.0])}))

    assert np.isnan(read["x"][:3]).all()
    assert read["x"][3] == 1.0


def test_values_json_cannot_hold_raise_type_error() -> None:
    with pytest.raises(TypeError, match="complex"):
        encode_tensors({"z": np.array([1 + 2j])})
