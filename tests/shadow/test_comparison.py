"""The agreement maths on edge cases real traffic meets: NaN, strings, many labels, constants."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keel.shadow.comparison import (
    OTHER,
    compare_labels,
    compare_scores,
    compared_as,
    decile_psi,
    label_names,
    pearson,
    smoothed_psi,
)
from keel.shadow.jsonable import jsonable


def test_nan_against_a_number_is_the_worst_disagreement_and_same_nan_agrees() -> None:
    primary = np.array([[0.1, 0.9], [np.nan, 1.0], [0.5, 0.5]])
    candidate = np.array([[0.1, 0.9], [np.nan, 1.0], [np.nan, 0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_scores(primary, candidate, tolerance=0.01)
    assert result.within_tolerance.tolist() == [True, True, False]
    assert result.row_difference[2] == math.inf
    assert result.non_finite_rows == 2
    # Statistics cover the finite pairs only, so they stay numbers.
    assert result.max_abs_diff == 0.0


def test_string_labels_compare_and_sort_as_text() -> None:
    primary = np.array(["cat", "dog", "dog", "eel"], dtype=object)
    candidate = np.array(["cat", "dog", "cat", "fox"], dtype=object)
    result = compare_labels(primary, candidate)
    assert result.categories == ("cat", "dog", "eel", "fox")
    assert result.agreement == 0.5
    assert result.confusion.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0]]


def test_int_labels_of_different_widths_are_the_same_labels() -> None:
    primary = np.array([0, 1, 2], dtype=np.int32)
    candidate = np.array([0, 1, 2], dtype=np.int64)
    assert compare_labels(primary, candidate).agreement == 1.0
    assert compared_as(primary.dtype) == "label"
    assert compared_as(np.dtype(np.float32)) == "score"
    assert compared_as(np.dtype(np.int64), "regression") == "score"


def test_rare_labels_beyond_the_limit_share_one_cell() -> None:
    rng = np.random.default_rng(0)
    primary = rng.integers(0, 50, 2000)
    candidate = np.where(rng.random(2000) < 0.9, primary, rng.integers(0, 50, 2000))
    result = compare_labels(primary, candidate, max_categories=10)
    assert len(result.categories) == 10
    assert result.categories[-1] == OTHER
    assert result.confusion.sum() == 2000
    # Agreement is on the real labels, not on the folded cells.
    assert result.agreement == pytest.approx(np.mean(primary == candidate))


def test_label_names_apply_only_to_integer_labels_that_index_them() -> None:
    assert label_names((0, 1), ["no", "yes"]) == ["no", "yes"]
    assert label_names((0, 2), ["no", "yes"]) is None
    assert label_names(("a", "b"), ["no", "yes"]) is None
    assert label_names((0, OTHER), ["no", "yes"]) == ["no", OTHER]


def test_psi_of_identical_counts_is_zero_and_grows_with_a_shift() -> None:
    assert smoothed_psi([10, 0, 5], [10, 0, 5]) == 0.0
    small = smoothed_psi([50, 50], [45, 55])
    large = smoothed_psi([50, 50], [10, 90])
    assert 0 < small < large
    values = np.random.default_rng(1).normal(size=1000)
    assert decile_psi(values, values) == 0.0
    assert decile_psi(values, values + 1.0) > 0.5


def test_a_constant_primary_still_sees_a_candidate_move_either_way() -> None:
    constant = np.full(100, 0.5)
    assert decile_psi(constant, constant) == 0.0
    assert decile_psi(constant, np.full(100, 0.4)) > 1.0
    assert decile_psi(constant, np.full(100, 0.6)) > 1.0


def test_correlation_is_none_where_undefined() -> None:
    assert pearson(np.array([1.0]), np.array([2.0])) is None
    assert pearson(np.array([1.0, 1.0]), np.array([2.0, 3.0])) is None
    assert pearson(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 4))),
    st.floats(0, 10),
)
def test_score_comparison_of_any_floats_is_strict_json_and_never_warns(
    values: np.ndarray, tolerance: float
) -> None:
    candidate = np.roll(values, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare_scores(values, candidate, tolerance=tolerance)
    summary = {
        "mean": result.mean_abs_diff,
        "p99": result.p99_abs_diff,
        "correlation": result.correlation,
        "psi": result.psi_by_element,
        "agreement": result.agreement,
    }
    json.dumps(jsonable(summary), allow_nan=False)
    assert result.within_tolerance.shape == (values.shape[0],)
