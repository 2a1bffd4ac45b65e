"""Several workers' drift windows of one version, added up: judged as one window of all rows."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from monitoring_support import Traffic, held_out_traffic

from keel.monitoring.totals import WindowTotals, merged
from keel.monitoring.window import DriftWindow
from keel.reference import NumericStats
from keel.settings import DriftSettings
from support import OnnxModel

SMALL = DriftSettings(window_rows=1000, block_rows=100, min_rows=100, collapse_rows=50)


@pytest.fixture(scope="module")
def traffic(breast_cancer_model: OnnxModel, tmp_path_factory: pytest.TempPathFactory) -> Traffic:
    return held_out_traffic(breast_cancer_model, tmp_path_factory.mktemp("totals"))


def _fed(traffic: Traffic) -> DriftWindow:
    window = DriftWindow.for_model(traffic.metadata, SMALL)
    for features, predictions in traffic.batches(16):
        window.observe(features, predictions)
    return window


def _shifted(traffic: Traffic) -> Traffic:
    stats = traffic.metadata.reference.features["mean_radius"]  # type: ignore[union-attr]
    assert isinstance(stats, NumericStats)
    assert stats.std is not None
    return traffic.with_feature("mean_radius", traffic.features["mean_radius"] + 2 * stats.std)


def test_two_halves_added_are_judged_as_the_whole(traffic: Traffic) -> None:
    traffic = _shifted(traffic)
    half = traffic.rows // 2
    first = _fed(traffic.take(np.arange(half)))
    second = _fed(traffic.take(np.arange(half, traffic.rows)))
    whole = _fed(traffic)
    # Each half alone is under min_rows of values for some columns' tests; together they
    # are the whole window, and judged exactly as it is.
    together = first.judge(merged([first.totals(), second.totals()], SMALL.collapse_rows))
    alone = whole.snapshot()
    assert together.rows == alone.rows == traffic.rows
    for got, want in zip(together.features, alone.features, strict=True):
        assert (got.name, got.status, got.psi, got.statistic, got.null_rate) == (
            want.name,
            want.status,
            want.psi,
            want.statistic,
            want.null_rate,
        )
    assert together.entropy == pytest.approx(alone.entropy)
    assert {c.name: c.status for c in together.features}["mean_radius"] == 2


def test_totals_travel_as_json_unchanged(traffic: Traffic) -> None:
    totals = _fed(traffic).totals()
    back = WindowTotals.from_json(orjson.loads(orjson.dumps(totals.to_json())))
    assert back.rows == totals.rows
    assert back.observed == totals.observed
    np.testing.assert_array_equal(back.counts, totals.counts)
    np.testing.assert_array_equal(back.recent_slots, totals.recent_slots)
    np.testing.assert_array_equal(back.recent_values, totals.recent_values)
    np.testing.assert_array_equal(back.moments.entropy, totals.moments.entropy)
    assert back.fits(totals)


def test_an_empty_window_adds_nothing_and_pools_no_recent_rows(traffic: Traffic) -> None:
    fed = _fed(traffic)
    empty = DriftWindow.for_model(traffic.metadata, SMALL).totals()
    assert empty.fits(fed.totals())
    total = merged([fed.totals(), empty], SMALL.collapse_rows)
    assert total.rows == traffic.rows
    assert len(total.recent_slots) == SMALL.collapse_rows // 2


def test_a_window_of_another_layout_does_not_fit(traffic: Traffic) -> None:
    totals = _fed(traffic).totals()
    other = WindowTotals.from_json(
        {**totals.to_json(), "counts": {"shape": [3], "data": [1, 2, 3]}}
    )
    assert not totals.fits(other)
