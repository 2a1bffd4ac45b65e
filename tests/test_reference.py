"""Reference statistics: deterministic quantile bins, exact counts, nulls counted."""

from __future__ import annotations

import numpy as np

from keel.reference import (
    bin_counts,
    categorical_stats,
    numeric_stats,
    prediction_columns,
    text_stats,
)


def test_numeric_stats_bin_at_deciles_and_count_every_row() -> None:
    values = np.random.default_rng(0).normal(size=10_000).tolist() + [None] * 100
    stats = numeric_stats(values)
    assert stats.count == 10_100
    assert stats.null_count == 100
    assert abs(stats.null_rate - 100 / 10_100) < 1e-12
    assert len(stats.quantiles) == 11
    assert len(stats.bin_edges) == 9
    assert sum(stats.bin_counts) == 10_000
    # Decile bins hold a tenth of the reference each.
    assert all(abs(c - 1000) <= 1 for c in stats.bin_counts)
    assert numeric_stats(values) == stats


def test_numeric_stats_keep_nan_and_infinity_out_of_quantiles() -> None:
    stats = numeric_stats([1.0, 2.0, float("nan"), float("inf"), 3.0])
    assert stats.nan_count == 1
    assert stats.max == 3.0
    assert stats.null_count == 0


def test_numeric_stats_of_an_all_null_column() -> None:
    stats = numeric_stats([None, None])
    assert stats.null_rate == 1.0
    assert stats.quantiles == []
    assert stats.mean is None


def test_bins_are_closed_on_the_right() -> None:
    assert bin_counts(np.array([0.0, 1.0, 1.5, 2.0, 3.0]), [1.0, 2.0]).tolist() == [2, 2, 1]


def test_categorical_stats_list_every_declared_level() -> None:
    stats = categorical_stats(["a", "b", "a", None], levels=["a", "b", "c"])
    assert stats.frequencies == {"a": 2, "b": 1, "c": 0}
    assert stats.null_count == 1


def test_boolean_and_integer_labels_are_named_stably() -> None:
    assert categorical_stats([True, False, True]).frequencies == {"false": 1, "true": 2}
    assert categorical_stats(np.array([0.0, 1.0, 1.0])).frequencies == {"0": 1, "1": 2}


def test_text_stats_count_distinct_values() -> None:
    stats = text_stats(["x", "y", "x", None])
    assert stats.distinct == 2
    assert stats.top == {"x": 2, "y": 1}
    assert stats.null_count == 1


def test_prediction_columns_are_named_by_label() -> None:
    probabilities = np.array([[0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    columns = prediction_columns("p", probabilities, ["no", "yes"])
    assert list(columns) == ["p[no]", "p[yes]"]
    assert columns["p[yes]"].tolist() == [np.float32(0.8), np.float32(0.4)]
    assert list(prediction_columns("label", np.array([1, 0]), None)) == ["label"]
