"""Properties of to_arrays over random signatures: every path agrees, every bad value is named."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.errors import InvalidRequest
from keel.signature import Feature, Signature, to_arrays

from .strategies import invalid_values, signatures, valid_records

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _columns(records: list[dict[str, Any]], signature: Signature) -> dict[str, list[Any]]:
    # Every column is present: a dict without columns could not say how many rows it has.
    names = [f.name for f in signature.features]
    names += sorted({name for record in records for name in record} - set(names))
    return {name: [record.get(name) for record in records] for name in names}


def _expected(records: list[dict[str, Any]], signature: Signature) -> dict[str, np.ndarray]:
    """An independent, row-by-row statement of what each tensor must hold."""
    arrays = {}
    for tensor in signature.inputs:
        rows = []
        for record in records:
            row: list[Any] = []
            for name in tensor.features:
                row += _cells(signature.feature(name), record.get(name), tensor.dtype)
            rows.append(row)
        width = signature.input_width(tensor.name)
        dtype = object if tensor.dtype == "string" else tensor.dtype
        array = np.empty((len(rows), width), dtype=dtype)
        for i, row in enumerate(rows):
            array[i, :] = row
        arrays[tensor.name] = array
    return arrays


def _cells(feature: Feature, value: Any, tensor_dtype: str) -> list[Any]:
    if value is None:
        value = feature.missing_indicator
    if feature.dtype != "categorical":
        return [value]
    if tensor_dtype == "string":
        return [value]
    levels = list(feature.levels or ())
    if feature.encoding == "index":
        return [levels.index(value)]
    return [1 if level == value else 0 for level in levels]


def _assert_same(left: dict[str, np.ndarray], right: dict[str, np.ndarray]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert left[name].dtype == right[name].dtype, name
        assert left[name].shape == right[name].shape, name
        np.testing.assert_array_equal(left[name], right[name])


@PROPERTY
@given(st.data())
def test_records_columns_and_dataframes_give_identical_arrays(data: st.DataObject) -> None:
    signature = data.draw(signatures())
    records = data.draw(valid_records(signature))
    from_records = to_arrays(records, signature)
    _assert_same(from_records, _expected(records, signature))
    _assert_same(from_records, to_arrays(_columns(records, signature), signature))
    _assert_same(from_records, to_arrays(pd.DataFrame(records), signature))


@PROPERTY
@given(st.data())
def test_an_invalid_value_is_always_refused_naming_its_field(data: st.DataObject) -> None:
    signature = data.draw(signatures())
    records = data.draw(valid_records(signature).filter(bool))
    row = data.draw(st.integers(0, len(records) - 1))
    feature = data.draw(st.sampled_from(signature.features))
    records[row] = {**records[row], feature.name: data.draw(invalid_values(feature))}
    for path, payload in (
        ("records", records),
        ("columns", _columns(records, signature)),
        ("dataframe", pd.DataFrame(records)),
    ):
        try:
            to_arrays(payload, signature)
        except InvalidRequest as refusal:
            named = {(e.index, e.field) for e in refusal.errors}
        else:
            raise AssertionError(f"{path}: {records[row][feature.name]!r} was accepted")
        # A column of the wrong dtype is one error for the whole column (index None).
        assert (row, feature.name) in named or (
            path != "records" and (None, feature.name) in named
        ), (path, named)


@PROPERTY
@given(st.data())
def test_an_unknown_field_is_always_refused(data: st.DataObject) -> None:
    signature = data.draw(signatures())
    records = data.draw(valid_records(signature).filter(bool))
    row = data.draw(st.integers(0, len(records) - 1))
    records[row] = {**records[row], "zz_unknown": data.draw(st.integers() | st.text())}
    for payload in (records, pd.DataFrame(records)):
        with pytest.raises(InvalidRequest) as refusal:
            to_arrays(payload, signature)
        found = {(e.field, e.rule) for e in refusal.value.errors}
        assert ("zz_unknown", "unknown_field") in found


def test_nan_indicator_reaches_the_model_from_every_path() -> None:
    feature = Feature(
        name="x",
        dtype="float",
        allow_nan=True,
        nullable=True,
        missing="indicator",
        missing_indicator=math.nan,
    )
    signature = Signature.model_validate(
        {
            "features": [feature],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [None], "kind": "score"}],
        }
    )
    records: list[dict[str, Any]] = [{"x": None}, {"x": math.nan}, {}]
    for payload in (records, {"x": [None, math.nan, None]}, pd.DataFrame(records)):
        assert np.isnan(to_arrays(payload, signature)["input"]).all()
