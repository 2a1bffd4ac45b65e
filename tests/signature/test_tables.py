"""Tests for keel.signature.tables: reading dicts of columns and DataFrames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from keel.signature.tables import is_dataframe, list_values, read_table, series_values


def test_a_dataframe_is_recognised_and_a_dict_is_not() -> None:
    assert is_dataframe(pd.DataFrame({"a": [1]}))
    assert not is_dataframe({"a": [1]})


def test_columns_of_unequal_length_are_refused() -> None:
    table = read_table({"a": [1.0, 2.0], "b": [1.0]})
    assert [(e.field, e.rule) for e in table.errors] == [("b", "not_a_record")]


@pytest.mark.parametrize("value", [1.0, "abc", {"x": 1}, np.zeros((2, 2)), np.float64(1.0)])
def test_a_value_that_is_not_a_column_is_a_type_error(value: object) -> None:
    table = read_table({"a": value})
    [error] = table.errors
    assert (error.index, error.field, error.rule) == (None, "a", "type")
    assert "wrap it in a list" in error.message


def test_non_string_column_names_are_unknown_fields() -> None:
    assert [(e.field, e.rule) for e in read_table({1: [1.0]}).errors] == [("1", "unknown_field")]
    frame = pd.DataFrame({0: [1.0]})
    assert [(e.field, e.rule) for e in read_table(frame).errors] == [("0", "unknown_field")]


def test_a_repeated_dataframe_column_is_refused_once() -> None:
    frame = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["a", "a", "b"])
    table = read_table(frame)
    assert [(e.field, e.rule) for e in table.errors] == [("a", "not_a_record")]
    assert list(table.columns) == ["b"]


def test_a_dataframe_without_columns_still_has_its_rows() -> None:
    assert read_table(pd.DataFrame(index=range(3))).rows == 3


def test_lists_become_typed_arrays_only_when_every_value_has_one_type() -> None:
    assert list_values([1.0, 2.0]).dtype == np.float64
    assert list_values([1, 2]).dtype == np.int64
    assert list_values([True, False]).dtype == np.bool_
    # numpy would turn these into integers or strings and hide the wrong type.
    assert list_values([True, 2]).dtype == object
    assert list_values([1, "a"]).dtype == object
    assert list_values([2**64]).dtype == object
    assert list_values([]).dtype == object


def test_a_list_of_lists_stays_one_dimensional() -> None:
    column = list_values([[1, 2], [3, 4]])
    assert column.shape == (2,)


def test_extension_dtypes_keep_na_and_exact_integers() -> None:
    values = series_values(pd.Series([2**62 + 1, None], dtype="Int64"))
    assert values[0] == 2**62 + 1
    assert values[1] is pd.NA
