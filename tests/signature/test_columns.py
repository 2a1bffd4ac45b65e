"""Tests for keel.signature.columns: column checks with pandas' missing-value conventions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from keel.errors import FieldError, InvalidRequest
from keel.signature import Feature, ModelInput, Output, Signature, TensorDtype
from keel.signature.columns import FeatureColumn, check_table
from keel.signature.tables import read_table

PRICE = Feature(name="price", dtype="float", minimum=0.0, maximum=100.0)
SPARSE_PRICE = Feature(
    name="price", dtype="float", nullable=True, missing="indicator", missing_indicator=-1.0
)
RATIO = Feature(name="ratio", dtype="float", allow_nan=True)
COUNT = Feature(name="count", dtype="int", minimum=0, maximum=10)
SPARSE_COUNT = Feature(
    name="count", dtype="int", nullable=True, missing="indicator", missing_indicator=-1
)


def _signature(*features: Feature, tensor: TensorDtype = "float64") -> Signature:
    names = [f.name for f in features]
    return Signature(
        features=features,
        outputs=[Output(name="y", dtype="float32", shape=[None], kind="score")],
        inputs=[ModelInput(name="x", dtype=tensor, features=names)],
    )


def _column(feature: Feature, values: object) -> FeatureColumn:
    return check_table(read_table({feature.name: values}), _signature(feature))[feature.name]


def _errors(
    feature: Feature, values: object, tensor: TensorDtype = "float64"
) -> list[tuple[int | None, str, str]]:
    with pytest.raises(InvalidRequest) as excinfo:
        check_table(read_table({feature.name: values}), _signature(feature, tensor=tensor))
    return [(e.index, e.field, e.rule) for e in excinfo.value.errors]


def test_nan_is_missing_in_a_float_column() -> None:
    column = _column(SPARSE_PRICE, np.array([1.0, np.nan]))
    assert column.missing.tolist() == [False, True]


def test_nan_in_a_non_nullable_float_column_breaks_the_null_rule() -> None:
    assert _errors(PRICE, np.array([1.0, np.nan])) == [(1, "price", "null")]


def test_nan_is_a_value_where_the_feature_allows_it() -> None:
    column = _column(RATIO, np.array([np.nan, np.inf]))
    assert not column.missing.any()
    assert math.isnan(column.values[0])


def test_infinity_breaks_the_nan_rule_in_a_float_column() -> None:
    assert _errors(PRICE, np.array([np.inf, 5.0])) == [(0, "price", "nan")]


def test_bounds_are_checked_row_by_row() -> None:
    found = _errors(PRICE, np.array([-1.0, 5.0, 101.0]))
    assert found == [(0, "price", "minimum"), (2, "price", "maximum")]


@pytest.mark.parametrize("marker", [None, math.nan, pd.NA, np.float32("nan")])
def test_pandas_missing_markers_are_missing_in_object_columns(marker: object) -> None:
    column = _column(SPARSE_PRICE, [1.5, marker])
    assert column.missing.tolist() == [False, True]


def test_an_int_column_with_gaps_arrives_as_float_and_stays_exact() -> None:
    column = _column(SPARSE_COUNT, np.array([3.0, np.nan]))
    assert column.values.dtype == np.int64
    assert column.values[0] == 3
    assert column.missing.tolist() == [False, True]


def test_fractional_and_infinite_values_in_an_int_column_are_type_errors() -> None:
    assert _errors(COUNT, np.array([2.5, np.inf, 4.0])) == [
        (0, "count", "type"),
        (1, "count", "type"),
    ]


def test_uint64_beyond_int64_is_a_type_error() -> None:
    feature = Feature(name="count", dtype="int")
    assert _errors(feature, np.array([2**63, 1], dtype=np.uint64)) == [(0, "count", "type")]


def test_a_column_of_the_wrong_dtype_is_one_error_for_the_column() -> None:
    assert _errors(PRICE, np.array([True, False])) == [(None, "price", "type")]
    assert _errors(Feature(name="flag", dtype="bool"), np.array([0, 1])) == [(None, "flag", "type")]


def test_strings_in_a_numeric_column_are_type_errors_row_by_row() -> None:
    assert _errors(PRICE, [1.0, "2.0"]) == [(1, "price", "type")]


def test_a_missing_column_is_required_unless_the_feature_is_nullable() -> None:
    table = read_table({"other": [1.0]})
    with pytest.raises(InvalidRequest) as excinfo:
        check_table(table, _signature(PRICE, SPARSE_COUNT))
    assert excinfo.value.errors == [
        FieldError(None, "other", "unknown_field", "not a feature of this signature"),
        FieldError(None, "price", "required", "a value is required (the feature is not nullable)"),
    ]


def test_a_missing_nullable_column_is_all_missing() -> None:
    columns = check_table(read_table({"price": [1.0, 2.0]}), _signature(PRICE, SPARSE_COUNT))
    assert columns["count"].missing.tolist() == [True, True]


def test_categorical_columns_hold_level_indices() -> None:
    feature = Feature(name="size", dtype="categorical", levels=["s", "m", "l"])
    column = _column(feature, np.array(["l", "s", "m"]))
    assert column.values.tolist() == [2, 0, 1]
    assert _errors(feature, ["s", "xl"]) == [(1, "size", "level")]


def test_pandas_category_and_string_dtypes_are_read() -> None:
    size = Feature(
        name="size",
        dtype="categorical",
        levels=["s", "m"],
        nullable=True,
        missing="indicator",
        missing_indicator="s",
    )
    frame = pd.DataFrame({"size": pd.Series(["m", None], dtype="category")})
    [column] = check_table(read_table(frame), _signature(size)).values()
    assert column.values[0] == 1
    assert column.missing.tolist() == [False, True]


def test_an_all_nan_float_column_is_all_missing_for_any_feature() -> None:
    flag = Feature(
        name="flag", dtype="bool", nullable=True, missing="indicator", missing_indicator=False
    )
    assert _column(flag, np.array([np.nan, np.nan])).missing.tolist() == [True, True]
    assert _errors(flag, np.array([np.nan, 1.0])) == [(1, "flag", "type")]


def test_a_value_beyond_float32_is_refused_for_a_float32_tensor() -> None:
    found = _errors(PRICE.model_copy(update={"maximum": None}), np.array([1e39, 1.0]), "float32")
    assert found == [(0, "price", "maximum")]
    assert _column(Feature(name="price", dtype="float"), np.array([1e39])).values[0] == 1e39
