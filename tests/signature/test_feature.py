"""Tests for keel.signature.feature: what a feature may declare."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from keel.signature import Feature


def _refused(**spec: Any) -> str:
    with pytest.raises(ValidationError) as excinfo:
        Feature(**spec)
    return str(excinfo.value)


@pytest.mark.parametrize("name", ["age", "mean_radius", "a.b-c_1", "_private", "X9"])
def test_identifier_like_names_are_accepted(name: str) -> None:
    assert Feature(name=name, dtype="float").name == name


@pytest.mark.parametrize("name", ["", "mean radius", "1st", "-x", "a/b", "é", "a" * 129])
def test_names_that_are_not_identifier_like_are_refused(name: str) -> None:
    _refused(name=name, dtype="float")


def test_categorical_encoding_defaults_to_onehot() -> None:
    feature = Feature(name="colour", dtype="categorical", levels=["red"])
    assert feature.encoding == "onehot"


def test_levels_on_a_float_feature_are_refused_naming_the_feature() -> None:
    assert "'price'" in _refused(name="price", dtype="float", levels=["a"])


def test_encoding_on_a_non_categorical_feature_is_refused() -> None:
    assert "encoding" in _refused(name="price", dtype="float", encoding="index")


@pytest.mark.parametrize("levels", [None, [], ["a", "a"]])
def test_categorical_needs_unique_non_empty_levels(levels: list[str] | None) -> None:
    assert "'colour'" in _refused(name="colour", dtype="categorical", levels=levels)


def test_minimum_above_maximum_is_refused() -> None:
    assert "minimum" in _refused(name="age", dtype="int", minimum=10, maximum=5)


def test_bounds_on_a_bool_feature_are_refused() -> None:
    _refused(name="flag", dtype="bool", minimum=0)


def test_int_feature_needs_integer_bounds() -> None:
    _refused(name="age", dtype="int", minimum=0.5)
    _refused(name="age", dtype="int", maximum=2**64)


def test_nan_bound_is_refused() -> None:
    _refused(name="x", dtype="float", minimum=math.nan)


def test_allow_nan_is_for_float_features_only() -> None:
    assert "allow_nan" in _refused(name="n", dtype="int", allow_nan=True)


def test_indicator_without_nullable_is_refused() -> None:
    message = _refused(name="x", dtype="float", missing="indicator", missing_indicator=-1)
    assert "'x'" in message
    assert "nullable" in message


def test_nullable_without_an_indicator_policy_is_refused() -> None:
    assert "missing='indicator'" in _refused(name="x", dtype="float", nullable=True)


def test_indicator_policy_needs_a_value() -> None:
    _refused(name="x", dtype="float", nullable=True, missing="indicator")


def test_indicator_value_without_indicator_policy_is_refused() -> None:
    _refused(name="x", dtype="float", missing_indicator=-1)


@pytest.mark.parametrize(
    ("dtype", "indicator", "extra"),
    [
        ("float", "zero", {}),
        ("float", True, {}),
        ("float", math.nan, {}),
        ("float", math.inf, {}),
        ("float", -1.0, {"allow_nan": True}),
        ("int", 1.5, {}),
        ("int", False, {}),
        ("int", 2**63, {}),
        ("bool", 1, {}),
        ("string", 0, {}),
        ("categorical", "purple", {"levels": ["red", "green"]}),
    ],
)
def test_indicator_must_fit_its_feature(
    dtype: str, indicator: object, extra: dict[str, Any]
) -> None:
    message = _refused(
        name="x",
        dtype=dtype,
        nullable=True,
        missing="indicator",
        missing_indicator=indicator,
        **extra,
    )
    assert "missing_indicator" in message


@pytest.mark.parametrize(
    ("dtype", "indicator", "extra"),
    [
        ("float", -1, {}),
        ("float", math.nan, {"allow_nan": True}),
        ("int", -1, {}),
        ("bool", False, {}),
        ("string", "", {}),
        ("categorical", "green", {"levels": ["red", "green"]}),
    ],
)
def test_indicators_that_fit_are_accepted(
    dtype: str, indicator: object, extra: dict[str, Any]
) -> None:
    spec = {"name": "x", "dtype": dtype, "nullable": True, "missing": "indicator"}
    feature = Feature.model_validate({**spec, "missing_indicator": indicator, **extra})
    assert feature.missing_indicator is not None


def test_features_are_frozen_and_hashable() -> None:
    feature = Feature(name="colour", dtype="categorical", levels=["red", "green"])
    attribute = "name"
    with pytest.raises(ValidationError):
        setattr(feature, attribute, "other")
    assert hash(feature) == hash(
        Feature(name="colour", dtype="categorical", levels=("red", "green"))
    )


def test_unknown_keys_are_refused() -> None:
    _refused(name="x", dtype="float", default=0.0)
