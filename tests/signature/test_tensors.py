"""The signature's rules on ready-made tensors: the verdict of the records they stand for."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keel.errors import FieldError, InvalidRequest
from keel.signature import Feature, ModelInput, Output, Signature, to_arrays
from keel.signature.tensors import MAX_REPORTED, tensor_rules

from .strategies import records_of, signatures, tensors

_SCORE = Output(name="score", dtype="float32", shape=[None, 1], kind="score")

# One feature of each kind a tensor can break, the way a user's model declares them.
SIGNATURE = Signature(
    features=[
        Feature(name="age", dtype="int", minimum=18, maximum=120),
        Feature(
            name="income",
            dtype="float",
            minimum=0,
            nullable=True,
            missing="indicator",
            missing_indicator=-1.0,
        ),
        Feature(name="owner", dtype="bool"),
        Feature(name="plan", dtype="categorical", levels=["free", "pro", "team"]),
        Feature(name="size", dtype="categorical", levels=["S", "M", "L"], encoding="index"),
        Feature(name="color", dtype="categorical", levels=["red", "blue"]),
        Feature(name="city", dtype="string"),
        Feature(name="visits", dtype="int", minimum=0, maximum=2**62),
    ],
    outputs=[_SCORE],
    inputs=[
        ModelInput(
            name="num", dtype="float32", features=["age", "income", "owner", "plan", "size"]
        ),
        ModelInput(name="text", dtype="string", features=["color", "city"]),
        ModelInput(name="counts", dtype="int64", features=["visits"]),
    ],
)
VALID_ROW = [30, 1000.0, 1, 0, 1, 0, 2]


def _refusals(name: str, array: np.ndarray) -> list[tuple[int | None, str, str]]:
    rules = tensor_rules(SIGNATURE)[name]
    errors = rules.violations(array)
    assert not rules.holds(array) or not errors
    return [(e.index, e.field, e.rule) for e in errors]


def _num(*rows: list[float]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_a_valid_row_passes_the_bulk_check() -> None:
    assert tensor_rules(SIGNATURE)["num"].holds(_num(VALID_ROW))
    assert _refusals("num", _num(VALID_ROW)) == []


@pytest.mark.parametrize(
    ("column", "value", "field", "rule"),
    [
        (0, 59.5, "age", "type"),
        (0, 17, "age", "minimum"),
        (0, math.nan, "age", "type"),
        (1, -2.0, "income", "minimum"),
        (1, math.nan, "income", "nan"),
        (1, math.inf, "income", "nan"),
        (2, 0.5, "owner", "type"),
        (2, 2, "owner", "type"),
        (6, 3, "size", "level"),
        (6, -1, "size", "level"),
        (6, 1.5, "size", "type"),
    ],
)
def test_each_rule_of_a_numeric_column_is_refused_naming_row_feature_and_rule(
    column: int, value: float, field: str, rule: str
) -> None:
    bad = list(VALID_ROW)
    bad[column] = value
    assert _refusals("num", _num(VALID_ROW, bad)) == [(1, field, rule)]


@pytest.mark.parametrize(
    ("one_hot", "rule"),
    [([1, 1, 0], "level"), ([0, 0, 0], "level"), ([0.5, 0.5, 0], "type"), ([2, -1, 0], "type")],
)
def test_a_one_hot_row_must_set_exactly_one_level_to_one(one_hot: list[float], rule: str) -> None:
    bad = [*VALID_ROW[:3], *one_hot, VALID_ROW[6]]
    assert _refusals("num", _num(bad)) == [(0, "plan", rule)]


def test_the_message_names_the_tensor_and_the_columns() -> None:
    bad = [59.5, 1000.0, 1, 1, 1, 0, 2]
    errors = tensor_rules(SIGNATURE)["num"].violations(_num(bad))
    assert [e.describe() for e in errors] == [
        "record 0, field 'age': input 'num' column 0: expected an integer, got 59.5 (rule: type)",
        "record 0, field 'plan': input 'num' columns 3-5: 2 levels are set ('free', 'pro'); "
        "exactly one one-hot column must be 1 (rule: level)",
    ]


def test_the_missing_indicator_is_accepted_outside_the_bounds() -> None:
    row = list(VALID_ROW)
    row[1] = -1.0  # income's indicator: what to_arrays writes for null
    assert _refusals("num", _num(row)) == []


def test_string_columns_hold_strings_and_categorical_ones_a_level() -> None:
    text = np.array([["red", "Paris"], ["green", "Oslo"], ["blue", ""]], dtype=object)
    assert _refusals("text", text) == [(1, "color", "level")]
    assert tensor_rules(SIGNATURE)["text"].holds(text[[0, 2]])
    with_a_number = np.array([["red", 7]], dtype=object)
    assert _refusals("text", with_a_number) == [(0, "city", "type")]


def test_int64_columns_are_compared_exactly_beyond_float_precision() -> None:
    # 2**62 + 1 rounds to 2**62 as a float: only an exact comparison refuses it.
    counts = np.array([[2**62], [2**62 + 1]], dtype=np.int64)
    assert _refusals("counts", counts) == [(1, "visits", "maximum")]


def test_an_int_feature_in_a_float_tensor_must_fit_64_bits() -> None:
    signature = Signature(
        features=[Feature(name="n", dtype="int")],
        outputs=[_SCORE],
        inputs=[ModelInput(name="x", dtype="float64", features=["n"])],
    )
    rules = tensor_rules(signature)["x"]
    fits = np.array([[-(2.0**63)], [2.0**63 - 1024]])
    assert rules.holds(fits)
    too_large = np.array([[2.0**63]])
    assert not rules.holds(too_large)
    assert [e.rule for e in rules.violations(too_large)] == ["type"]


def test_no_more_than_the_first_violations_are_reported() -> None:
    rows = [[59.5, 1000.0, 1, 1, 1, 0, 2]] * 30
    errors = tensor_rules(SIGNATURE)["num"].violations(_num(*rows))
    assert len(errors) == MAX_REPORTED
    # By row, then feature: the first rows' every violation, not one feature's every row.
    assert [(e.index, e.field) for e in errors[:3]] == [(0, "age"), (0, "plan"), (1, "age")]


# --- every rule, on random signatures: a tensor is valid exactly when its records are ---


def _comparable(errors: list[FieldError], signature: Signature) -> set[tuple[Any, ...]]:
    # A one-hot or code cell that names no level becomes a record value of the wrong type,
    # so only the row and feature are compared there; numbers keep their rule.
    kinds = {f.name: f.dtype for f in signature.features}
    return {
        (e.index, e.field, e.rule if kinds[e.field] in ("float", "int") else "") for e in errors
    }


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_tensor_is_refused_exactly_when_the_records_it_stands_for_are(data: Any) -> None:
    signature = data.draw(signatures())
    arrays = data.draw(tensors(signature))
    rules = tensor_rules(signature)
    errors = [e for name, array in arrays.items() for e in rules[name].violations(array)]
    held = all(rules[name].holds(array) for name, array in arrays.items())
    assert not (held and errors), errors
    records = records_of(signature, arrays)
    expected = _records_verdict(records, signature)
    event("refused" if isinstance(expected, InvalidRequest) else "accepted")
    event("bulk check passed" if held else "looked at closely")
    if isinstance(expected, InvalidRequest):
        assert errors, (records, expected)
        if len(expected.errors) <= MAX_REPORTED:
            assert _comparable(errors, signature) == _comparable(expected.errors, signature)
        return
    assert not errors, (records, errors)
    for name, array in arrays.items():
        # What the model sees through either API.
        assert expected[name].dtype == array.dtype
        np.testing.assert_array_equal(expected[name], array)


def _records_verdict(
    records: list[dict[str, Any]], signature: Signature
) -> dict[str, np.ndarray] | InvalidRequest:
    try:
        return to_arrays(records, signature)
    except InvalidRequest as refused:
        return refused
