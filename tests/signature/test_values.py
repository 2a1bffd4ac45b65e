"""Tests for keel.signature.values: the value-by-value rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keel.signature import Feature
from keel.signature.rules import RuleViolation
from keel.signature.values import value_checker


def _rule(feature: Feature, value: object) -> str:
    with pytest.raises(RuleViolation) as excinfo:
        value_checker(feature)(value)
    return excinfo.value.rule


def test_nan_passes_the_bounds_of_a_feature_that_allows_it() -> None:
    feature = Feature(name="x", dtype="float", allow_nan=True, minimum=0, maximum=1)
    assert math.isnan(value_checker(feature)(math.nan))  # type: ignore[arg-type]


def test_infinity_is_still_held_to_the_bounds() -> None:
    feature = Feature(name="x", dtype="float", allow_nan=True, minimum=0, maximum=1)
    assert _rule(feature, math.inf) == "maximum"
    assert _rule(feature, -math.inf) == "minimum"


def test_an_int_too_large_for_a_float_is_a_type_error() -> None:
    assert _rule(Feature(name="x", dtype="float"), 10**400) == "type"


@pytest.mark.parametrize("value", [np.nan, np.float32("inf")])
def test_numpy_nan_and_infinity_are_refused_without_allow_nan(value: object) -> None:
    assert _rule(Feature(name="x", dtype="float"), value) == "nan"


@pytest.mark.parametrize("value", [math.nan, math.inf, 1e300])
def test_an_int_feature_refuses_floats_that_are_not_int64_integers(value: float) -> None:
    assert _rule(Feature(name="n", dtype="int"), value) == "type"


def test_an_int_feature_accepts_the_int64_extremes() -> None:
    check = value_checker(Feature(name="n", dtype="int"))
    assert check(-(2**63)) == -(2**63)
    assert check(2**63 - 1) == 2**63 - 1
    assert _rule(Feature(name="n", dtype="int"), 2**63) == "type"


def test_numpy_bool_is_a_bool_but_not_a_number() -> None:
    assert value_checker(Feature(name="b", dtype="bool"))(np.False_) is False
    assert _rule(Feature(name="x", dtype="float"), np.True_) == "type"
    assert _rule(Feature(name="n", dtype="int"), np.True_) == "type"


def test_null_for_a_nullable_feature_is_none() -> None:
    feature = Feature(
        name="s", dtype="string", nullable=True, missing="indicator", missing_indicator=""
    )
    assert value_checker(feature)(None) is None
