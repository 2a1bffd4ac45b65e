"""Tests for keel.signature.arrays: the one conversion from data to model input tensors."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from keel.errors import InvalidRequest
from keel.signature import Feature, ModelInput, Output, Signature, to_arrays

SCORE = Output(name="score", dtype="float32", shape=[None], kind="score")


def test_records_become_tensors_with_indicators_and_encodings(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    sparse = {**applicant, "income": None, "owner": False, "region": "east", "ratio": math.nan}
    del sparse["tier"], sparse["employer"]
    arrays = to_arrays([applicant, sparse], credit)
    assert set(arrays) == {"numeric", "text"}
    # age, income, ratio, owner, region one-hot (north, south, east), tier index
    expected = np.array(
        [
            [40, 52000, 0.25, 1, 0, 1, 0, 1],
            [40, -1, math.nan, 0, 0, 0, 1, 0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(arrays["numeric"], expected)
    assert arrays["numeric"].dtype == np.float32
    assert arrays["text"].dtype == object
    assert arrays["text"].tolist() == [["Acme"], ["<none>"]]


def test_signature_method_and_function_agree(credit: Signature, applicant: dict[str, Any]) -> None:
    left, right = credit.to_arrays([applicant]), to_arrays([applicant], credit)
    for name in left:
        np.testing.assert_array_equal(left[name], right[name])


def test_index_encoding_and_categorical_in_a_string_tensor() -> None:
    features = [
        Feature(name="size", dtype="categorical", levels=["s", "m", "l"], encoding="index"),
        Feature(name="colour", dtype="categorical", levels=["red", "blue"]),
        Feature(name="count", dtype="int"),
        Feature(name="flag", dtype="bool"),
    ]
    inputs = [
        ModelInput(name="codes", dtype="int64", features=["size", "count", "flag"]),
        ModelInput(name="names", dtype="string", features=["colour"]),
    ]
    signature = Signature(features=features, outputs=[SCORE], inputs=inputs)
    arrays = signature.to_arrays(
        {"size": ["l", "s"], "count": [7, -2], "flag": [True, False], "colour": ["blue", "red"]}
    )
    assert arrays["codes"].dtype == np.int64
    assert arrays["codes"].tolist() == [[2, 7, 1], [0, -2, 0]]
    assert arrays["names"].tolist() == [["blue"], ["red"]]


def test_one_hot_encoding_width_is_the_number_of_levels() -> None:
    feature = Feature(name="colour", dtype="categorical", levels=["r", "g", "b", "y"])
    signature = Signature(features=[feature], outputs=[SCORE])
    array = signature.to_arrays([{"colour": "b"}, {"colour": "r"}])["input"]
    assert array.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]


def test_a_missing_categorical_value_gets_its_indicator_levels_encoding() -> None:
    feature = Feature(
        name="colour",
        dtype="categorical",
        levels=["r", "g", "unknown"],
        nullable=True,
        missing="indicator",
        missing_indicator="unknown",
    )
    signature = Signature(features=[feature], outputs=[SCORE])
    assert signature.to_arrays([{}])["input"].tolist() == [[0, 0, 1]]


def test_no_records_give_tensors_with_no_rows(credit: Signature) -> None:
    arrays = credit.to_arrays([])
    assert arrays["numeric"].shape == (0, credit.input_width("numeric"))
    assert arrays["text"].shape == (0, 1)


@pytest.mark.parametrize("data", ["age=40", 3, None, iter(())])
def test_data_that_is_neither_records_nor_columns_is_refused(
    credit: Signature, data: object
) -> None:
    with pytest.raises(InvalidRequest) as excinfo:
        credit.to_arrays(data)
    [error] = excinfo.value.errors
    assert error.rule == "not_a_record"


def test_one_bare_record_is_read_as_columns_and_the_error_says_to_wrap_it(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest, match="wrap it in a list"):
        credit.to_arrays(applicant)


def test_every_path_refuses_the_same_bad_value(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    records = [applicant, {**applicant, "age": 300}]
    columns = {name: [r[name] for r in records] for name in applicant}
    for data in (records, columns, pd.DataFrame(records)):
        with pytest.raises(InvalidRequest) as excinfo:
            credit.to_arrays(data)
        found = [(e.index, e.field, e.rule) for e in excinfo.value.errors]
        assert found == [(1, "age", "maximum")]


def test_breast_cancer_dataframe_converts_to_the_float32_feature_matrix() -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.data.rename(columns=lambda column: column.replace(" ", "_"))
    features = [Feature(name=c, dtype="float", minimum=0.0) for c in frame.columns]
    signature = Signature(features=features, outputs=[SCORE])
    array = signature.to_arrays(frame)["input"]
    assert len(features) == 30
    assert array.dtype == np.float32
    np.testing.assert_array_equal(array, frame.to_numpy().astype(np.float32))


def test_a_100k_row_dataframe_converts_well_under_a_second() -> None:
    names = [f"f{i}" for i in range(30)]
    features = [Feature(name=n, dtype="float", minimum=-10, maximum=10) for n in names]
    signature = Signature(features=features, outputs=[SCORE])
    values = np.random.default_rng(0).uniform(-5, 5, (100_000, 30))
    frame = pd.DataFrame(values, columns=names)
    started = time.perf_counter()
    array = signature.to_arrays(frame)["input"]
    elapsed = time.perf_counter() - started
    np.testing.assert_array_equal(array, values.astype(np.float32))
    # Measured at a few tens of milliseconds; the bound leaves room for a busy CI machine.
    assert elapsed < 1.0
