"""The drift statistics against hand-computed and textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from keel.monitoring.statistics import (
    PSI_EPSILON,
    binned_ks,
    binomial_tail_bound,
    chi2_sf,
    chi_square_homogeneity,
    kolmogorov_sf,
    psi,
    psi_noise,
    row_entropy,
)
from keel.reference import bin_counts, numeric_stats


def test_psi_of_two_bins_by_hand() -> None:
    # q = (0.5, 0.5), p = (0.25, 0.75):
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3
    assert psi([10, 10], [5, 15]) == pytest.approx(0.25 * math.log(3), rel=1e-12)
    assert psi([10, 10], [5, 15]) == pytest.approx(0.274653, abs=1e-6)


def test_psi_is_zero_for_equal_shares_and_symmetric() -> None:
    assert psi([1, 2, 3], [10, 20, 30]) == 0.0
    assert psi([3, 1], [1, 3]) == pytest.approx(psi([1, 3], [3, 1]))


def test_psi_gives_an_empty_bin_epsilon() -> None:
    # q = (1e-4, 1), p = (0.5, 0.5): (0.5 - 1e-4) ln(0.5 / 1e-4) + (0.5 - 1) ln(0.5)
    expected = (0.5 - PSI_EPSILON) * math.log(5000) + 0.5 * math.log(2)
    assert psi([0, 10], [5, 5]) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(4.604319, abs=1e-6)


def test_psi_noise_is_what_psi_averages_between_samples_of_one_distribution() -> None:
    rng = np.random.default_rng(0)
    values = []
    for _ in range(400):
        # A fresh reference each time: its own sampling noise is half of what PSI averages.
        reference = numeric_stats(rng.normal(size=426).tolist())
        window = bin_counts(rng.normal(size=500), reference.bin_edges)
        values.append(psi(reference.bin_counts, window))
    # 9 * (1/500 + 1/426) = 0.0391: the small-sample bias that PSI thresholds must clear.
    assert psi_noise(10, 500, 426) == pytest.approx(0.039127, abs=1e-6)
    assert float(np.mean(values)) == pytest.approx(psi_noise(10, 500, 426), rel=0.05)


@pytest.mark.parametrize(
    ("x", "p_value"),
    [(0.8276, 0.50), (1.2238, 0.10), (1.3581, 0.05), (1.6276, 0.01), (1.9495, 0.001)],
)
def test_kolmogorov_sf_matches_the_critical_values_of_the_distribution(
    x: float, p_value: float
) -> None:
    assert kolmogorov_sf(x) == pytest.approx(p_value, abs=2e-4)


def test_kolmogorov_sf_is_continuous_where_its_two_series_meet() -> None:
    assert kolmogorov_sf(1.18 - 1e-9) == pytest.approx(kolmogorov_sf(1.18 + 1e-9), abs=1e-8)
    assert kolmogorov_sf(0.0) == 1.0
    assert kolmogorov_sf(0.2) == pytest.approx(1.0, abs=1e-6)


def test_binned_ks_by_hand() -> None:
    # Reference CDF at the edges: 0.25, 0.50, 0.75; window: 0.00, 0.25, 0.50 -> D = 0.25.
    result = binned_ks([10, 10, 10, 10], [0, 10, 10, 20])
    assert result.statistic == pytest.approx(0.25)
    root = math.sqrt(40 * 40 / 80)
    assert result.p_value == pytest.approx(kolmogorov_sf((root + 0.12 + 0.11 / root) * 0.25))
    assert 0.1 < result.p_value < 0.2
    assert binned_ks([10, 10], [0, 0]).p_value == 1.0


def test_binned_ks_equals_the_exact_statistic_when_every_value_has_its_bin() -> None:
    reference = np.array([1, 2, 2, 3, 4, 4, 4, 5])
    window = np.array([2, 3, 3, 4, 5, 5, 5, 5, 5, 5])
    grid = np.arange(1, 6)
    exact = max(abs(np.mean(reference <= v) - np.mean(window <= v)) for v in grid)
    edges = grid[:-1].astype(float)
    result = binned_ks(bin_counts(reference, edges), bin_counts(window, edges))
    assert result.statistic == pytest.approx(exact)


@pytest.mark.parametrize("x", [0.01, 0.5, 1.0, 3.841458820694124, 6.63, 10.0, 30.0])
def test_chi2_sf_with_one_degree_of_freedom_is_erfc(x: float) -> None:
    assert chi2_sf(x, 1) == pytest.approx(math.erfc(math.sqrt(x / 2)), rel=1e-10, abs=1e-300)


@pytest.mark.parametrize("x", [0.1, 2.0, 7.0, 40.0])
def test_chi2_sf_closed_forms_for_two_and_three_degrees(x: float) -> None:
    assert chi2_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-10)
    three = math.erfc(math.sqrt(x / 2)) + math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    assert chi2_sf(x, 3) == pytest.approx(three, rel=1e-10)


@pytest.mark.parametrize(
    ("x", "df", "p_value"),
    [
        (3.841458820694124, 1, 0.05),
        (11.070497693516351, 5, 0.05),
        (23.209251158954356, 10, 0.01),
        (124.34211340400407, 100, 0.05),
    ],
)
def test_chi2_sf_matches_textbook_critical_values(x: float, df: int, p_value: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p_value, rel=1e-9)


def test_chi_square_homogeneity_by_hand() -> None:
    # Observed [[30, 10], [20, 20]]; expected [[25, 15], [25, 15]];
    # statistic = 25/25 + 25/15 + 25/25 + 25/15 = 16/3 on one degree of freedom.
    result = chi_square_homogeneity([30, 10], [20, 20])
    assert result.statistic == pytest.approx(16 / 3)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(8 / 3)))
    assert result.p_value == pytest.approx(0.020921, abs=1e-6)


def test_chi_square_ignores_levels_neither_sample_has() -> None:
    assert chi_square_homogeneity([30, 0, 10], [20, 0, 20]) == chi_square_homogeneity(
        [30, 10], [20, 20]
    )
    assert chi_square_homogeneity([5, 0], [7, 0]).p_value == 1.0


def test_row_entropy_in_nats() -> None:
    rows = np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    expected = [math.log(2), 0.0, -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    assert row_entropy(rows).tolist() == pytest.approx(expected)
    assert row_entropy(np.full((1, 4), 0.25))[0] == pytest.approx(math.log(4))
    # One column is the positive class of a binary classifier.
    assert row_entropy(np.array([0.5, 1.0])).tolist() == pytest.approx([math.log(2), 0.0])
    assert np.isnan(row_entropy(np.array([[np.nan, 0.5]]))[0])


def test_binomial_tail_bound_is_the_chance_of_every_row_in_one_bin() -> None:
    assert binomial_tail_bound(1.0, 10, 0.1) == pytest.approx(1e-10)
    assert binomial_tail_bound(0.05, 100, 0.1) == 1.0
    # KL(0.95 || 0.5) = 0.95 ln 1.9 + 0.05 ln 0.1
    kl = 0.95 * math.log(1.9) + 0.05 * math.log(0.1)
    assert binomial_tail_bound(0.95, 40, 0.5) == pytest.approx(math.exp(-40 * kl))
