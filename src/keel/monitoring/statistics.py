"""The statistics drift detection rests on, in numpy and ``math`` (keel does not depend on scipy).

Every function takes bin counts, never raw rows: a window keeps counts at the
reference's bins, so a snapshot costs the same whatever the traffic.

* PSI (population stability index) over the same bins, with empty bins given
  :data:`PSI_EPSILON`, and its expected value under no drift (:func:`psi_noise`).
* A two-sample Kolmogorov-Smirnov test on the CDFs at the reference's bin edges,
  with the asymptotic Kolmogorov p-value. Comparing CDFs at the edges only can
  miss a difference between them, so the statistic is a lower bound of the exact
  one and the p-value is conservative.
* A chi-square test of homogeneity (reference counts against window counts),
  with the chi-square survival function from the regularized incomplete gamma.
* The entropy of rows of class probabilities.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

PSI_EPSILON = 1e-4
"""Share given to an empty bin so PSI stays finite.

Small enough that it does not mute a real change: a bin empty in the reference
that holds 5% of the window (an unseen level, say) adds 0.05 * ln(500) = 0.31,
an alert on its own; large enough that one stray row in a 5000-row window
against an empty reference bin adds only 0.0002 * ln(2) = 0.0001.
"""

_KOLMOGOROV_TERMS = np.arange(1, 101, dtype=np.float64)
_GAMMA_ITERATIONS = 10_000
_GAMMA_TOLERANCE = 1e-15
_TINY = 1e-300


class Comparison(NamedTuple):
    """A two-sample test's statistic and its p-value."""

    statistic: float
    p_value: float


def shares(counts: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Counts as proportions of their total (all zero when the total is zero)."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else np.zeros_like(array)


def psi(reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike) -> float:
    """Population stability index: sum of (p - q) * ln(p / q) over bins.

    ``q`` are the reference's shares and ``p`` the window's; a share of zero on
    either side is raised to :data:`PSI_EPSILON` (the shares are not renormalised
    after it: the difference is below the precision anyone reads PSI at).
    """
    q = np.maximum(shares(reference_counts), PSI_EPSILON)
    p = np.maximum(shares(window_counts), PSI_EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))


def psi_noise(bins: int, window_rows: int, reference_rows: int) -> float:
    """Expected PSI of two samples of one distribution: (bins - 1) * (1/n + 1/m).

    PSI is, to second order, a chi-square statistic divided by the sample size,
    so with ``bins`` non-empty bins it averages (bins - 1)(1/n + 1/m) when
    nothing has changed: 0.039 for deciles, a 500-row window and a 426-row
    reference. Subtracting it keeps small windows and small references from
    reading as drift.
    """
    if bins < 2 or window_rows <= 0 or reference_rows <= 0:
        return 0.0
    return (bins - 1) * (1.0 / window_rows + 1.0 / reference_rows)


def binned_ks(reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike) -> Comparison:
    """Two-sample Kolmogorov-Smirnov test on CDFs known at the bin edges only.

    The statistic is the largest gap between the two cumulative shares at the
    interior edges; the p-value is the asymptotic Kolmogorov one for the
    effective size n*m/(n+m), with Stephens' small-sample correction
    (Numerical Recipes 14.3).
    """
    reference = np.asarray(reference_counts, dtype=np.float64)
    window = np.asarray(window_counts, dtype=np.float64)
    m, n = reference.sum(), window.sum()
    if m <= 0 or n <= 0 or reference.size < 2:
        return Comparison(0.0, 1.0)
    gaps = np.abs(np.cumsum(window / n)[:-1] - np.cumsum(reference / m)[:-1])
    distance = float(gaps.max())
    root = math.sqrt(n * m / (n + m))
    return Comparison(distance, kolmogorov_sf((root + 0.12 + 0.11 / root) * distance))


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (limit of sqrt(n) * D_n)."""
    if x <= 0.0:
        return 1.0
    k = _KOLMOGOROV_TERMS
    if x < 1.18:
        # The alternating series converges slowly for small x; Jacobi's form does not.
        terms = np.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x))
        cdf = math.sqrt(2 * math.pi) / x * float(terms.sum())
        return min(max(1.0 - cdf, 0.0), 1.0)
    signs = np.where(k % 2 == 1, 1.0, -1.0)
    return min(max(2.0 * float(np.sum(signs * np.exp(-2 * k * k * x * x))), 0.0), 1.0)


def chi_square_homogeneity(
    reference_counts: npt.ArrayLike, window_counts: npt.ArrayLike
) -> Comparison:
    """Chi-square test that two samples share one distribution over the same levels.

    Levels empty in both samples are dropped; the degrees of freedom are the
    levels left minus one.
    """
    table = np.vstack(
        [np.asarray(reference_counts, np.float64), np.asarray(window_counts, np.float64)]
    )
    table = table[:, table.sum(axis=0) > 0]
    row_totals = table.sum(axis=1)
    if table.shape[1] < 2 or np.any(row_totals <= 0):
        return Comparison(0.0, 1.0)
    expected = np.outer(row_totals, table.sum(axis=0)) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return Comparison(statistic, chi2_sf(statistic, table.shape[1] - 1))


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for a chi-square variable with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    return regularized_gamma_q(df / 2.0, x / 2.0)


def regularized_gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a).

    A power series where it converges fast (x < a + 1) and a continued fraction
    (modified Lentz) elsewhere, as in Numerical Recipes 6.2.
    """
    if a <= 0:
        raise ValueError(f"a must be positive, got {a}")
    if x <= 0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        return min(max(1.0 - _lower_series(a, x) * math.exp(log_prefactor), 0.0), 1.0)
    return min(max(_upper_fraction(a, x) * math.exp(log_prefactor), 0.0), 1.0)


def _lower_series(a: float, x: float) -> float:
    term = total = 1.0 / a
    denominator = a
    for _ in range(_GAMMA_ITERATIONS):
        denominator += 1.0
        term *= x / denominator
        total += term
        if abs(term) < abs(total) * _GAMMA_TOLERANCE:
            break
    return total


def _upper_fraction(a: float, x: float) -> float:
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    result = d
    for i in range(1, _GAMMA_ITERATIONS):
        coefficient = -i * (i - a)
        b += 2.0
        d = coefficient * d + b
        d = d if abs(d) > _TINY else _TINY
        c = b + coefficient / c
        c = c if abs(c) > _TINY else _TINY
        d = 1.0 / d
        step = d * c
        result *= step
        if abs(step - 1.0) < _GAMMA_TOLERANCE:
            break
    return result


def row_entropy(probabilities: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Entropy in nats of each row of class probabilities (NaN where a row holds NaN).

    A single column is read as the probability of the positive class of a binary
    classifier. Values a rounding error outside [0, 1] add a rounding error.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    if p.shape[1] == 1:
        p = np.hstack([p, 1.0 - p])
    # 0 * log(tiny) is 0, the limit of p * log(p); NaN stays NaN.
    terms = p * np.log(np.maximum(p, _TINY))
    return np.asarray(-terms.sum(axis=1), dtype=np.float64)


def binomial_tail_bound(share: float, rows: int, reference_share: float) -> float:
    """Chernoff bound on the chance that ``share`` of ``rows`` draws land in one bin.

    exp(-rows * KL(share || reference_share)) for share above the reference's;
    1.0 otherwise. It bounds how often traffic like the reference would pile up
    this much in one bin by chance.
    """
    if rows <= 0 or share <= reference_share:
        return 1.0
    q = min(max(reference_share, _TINY), 1.0)
    divergence = share * math.log(share / q)
    if share < 1.0:
        divergence += (1.0 - share) * math.log((1.0 - share) / max(1.0 - q, _TINY))
    return math.exp(-rows * divergence)
