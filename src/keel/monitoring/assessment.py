"""The rules that turn a window's counts into statuses: drift, null spikes and collapse.

Drift (per column, once it has ``min_rows`` non-null values):
    excess = PSI - psi_noise, where psi_noise = (bins - 1)(1/n + 1/m) is what PSI
    averages between two samples of one distribution (n window values, m
    reference values). Alert when excess >= psi_alert, warn when >= psi_warn,
    and either only when the second test (binned KS for numbers, chi-square
    for levels) also has p < p_value: a big PSI from a small or tied sample is
    not yet evidence.

Null spike (per feature, once the window has ``min_rows`` rows):
    window rate - reference rate > max(null_spike_increase, null_spike_z * SE),
    SE the two-proportion standard error of the pooled rate. The floor keeps
    tiny but significant rises on big windows quiet; the z-term keeps small
    windows from flagging noise. A spike makes the feature's status alert.

Collapse (per prediction column): the predictions are narrow (std below
    collapse_std_ratio of the reference's) or piled up (more than
    collapse_share in one reference bin), and reference-like traffic would
    almost never look like this: the Chernoff bound on that many rows landing
    in the fullest bin is below :data:`COLLAPSE_CHANCE`. Checked on the most
    recent ``collapse_rows`` predictions on every snapshot, so a collapse shows
    within that many rows, even before the window has ``min_rows``; and on the
    whole window once it has them. A collapse makes the column's status alert.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keel.monitoring.layout import TrackedColumn, WindowLayout
from keel.monitoring.snapshot import ALERT, OK, WARN, DriftSnapshot, FeatureDrift, PredictionDrift
from keel.monitoring.statistics import (
    Comparison,
    binned_ks,
    binomial_tail_bound,
    chi_square_homogeneity,
    psi,
    psi_noise,
    shares,
)
from keel.monitoring.totals import WindowTotals
from keel.settings import DriftSettings, DriftThresholds

COLLAPSE_CHANCE = 1e-6
"""Largest chance that reference-like traffic piles up as a collapse flag requires."""


@dataclass(frozen=True)
class _Distribution:
    psi: float | None = None
    psi_noise: float | None = None
    test: str | None = None
    comparison: Comparison | None = None
    status: int = OK
    reason: str | None = None


def assess(
    layout: WindowLayout,
    totals: WindowTotals,
    settings: DriftSettings,
    thresholds: DriftThresholds,
    *,
    model: str = "",
    version: str = "",
) -> DriftSnapshot:
    """Judge every tracked column of a window."""
    judged = totals.rows >= settings.min_rows
    features: list[FeatureDrift] = []
    predictions: list[PredictionDrift] = []
    recent = 0
    for column in layout.columns:
        if column.role == "feature":
            features.append(_feature(column, totals, settings, thresholds, judged))
        else:
            predictions.append(_prediction(column, recent, totals, settings, thresholds, judged))
            recent += 1
    statuses = [c.status for c in features] + [c.status for c in predictions]
    return DriftSnapshot(
        model=model,
        version=version,
        status=max(statuses, default=OK),
        rows=totals.rows,
        observed=totals.observed,
        window_rows=settings.window_rows,
        min_rows=settings.min_rows,
        insufficient=not judged,
        thresholds=thresholds,
        features=features,
        predictions=predictions,
        entropy=_entropy(layout, totals),
    )


def _feature(
    column: TrackedColumn,
    totals: WindowTotals,
    settings: DriftSettings,
    thresholds: DriftThresholds,
    judged: bool,
) -> FeatureDrift:
    nulls = int(totals.counts[column.null_slot])
    rate = nulls / totals.rows if totals.rows else None
    drift = _distribution(column, totals, settings, thresholds, judged)
    spike = judged and null_spike(
        nulls, totals.rows, column.reference_null_rate, column.reference_rows, thresholds
    )
    reasons = [r for r in (drift.reason,) if r]
    if spike:
        reasons.append(f"null rate {rate:.3f} against {column.reference_null_rate:.3f}")
    return FeatureDrift.model_validate(
        {
            **_common(column, totals, drift, rate),
            "status": max(drift.status, ALERT if spike else OK),
            "null_spike": spike,
            "reasons": reasons,
        }
    )


def _prediction(
    column: TrackedColumn,
    recent_index: int,
    totals: WindowTotals,
    settings: DriftSettings,
    thresholds: DriftThresholds,
    judged: bool,
) -> PredictionDrift:
    nulls = int(totals.counts[column.null_slot])
    rate = nulls / totals.rows if totals.rows else None
    drift = _distribution(column, totals, settings, thresholds, judged)
    reasons = [r for r in (drift.reason,) if r]
    recent = _recent_collapse(column, recent_index, totals, thresholds, settings.collapse_rows)
    window = _window_collapse(column, totals, thresholds) if judged else None
    reasons += [r for r in (recent, window) if r]
    collapsed = bool(recent or window)
    return PredictionDrift.model_validate(
        {
            **_common(column, totals, drift, rate),
            "status": max(drift.status, ALERT if collapsed else OK),
            "collapsed": collapsed,
            "reasons": reasons,
        }
    )


def _common(
    column: TrackedColumn, totals: WindowTotals, drift: _Distribution, rate: float | None
) -> dict[str, object]:
    window = totals.counts[column.offset : column.null_slot]
    return {
        "name": column.name,
        "kind": column.kind,
        "rows": totals.rows,
        "values": int(window.sum()),
        "psi": drift.psi,
        "psi_noise": drift.psi_noise,
        "test": drift.test,
        "statistic": drift.comparison.statistic if drift.comparison else None,
        "p_value": drift.comparison.p_value if drift.comparison else None,
        "null_rate": rate,
        "reference_null_rate": column.reference_null_rate,
    }


def _distribution(
    column: TrackedColumn,
    totals: WindowTotals,
    settings: DriftSettings,
    thresholds: DriftThresholds,
    judged: bool,
) -> _Distribution:
    window = totals.counts[column.offset : column.null_slot]
    values = int(window.sum())
    if not judged or values < settings.min_rows:
        return _Distribution(reason=f"insufficient: {values} of {settings.min_rows} values")
    reference = column.reference_counts
    value = psi(reference, window)
    noise = psi_noise(int(np.count_nonzero(reference)), values, column.reference_values)
    if column.kind == "numeric":
        test, comparison = "ks", binned_ks(reference, window)
    else:
        test, comparison = "chi2", chi_square_homogeneity(reference, window)
    status = drift_status(value - noise, comparison.p_value, thresholds)
    reason = None
    if status > OK:
        reason = (
            f"psi {value:.3f} - noise {noise:.3f} over "
            f"{'alert' if status == ALERT else 'warn'}, {test} p={comparison.p_value:.2g}"
        )
    return _Distribution(value, noise, test, comparison, status, reason)


def drift_status(excess_psi: float, p_value: float, thresholds: DriftThresholds) -> int:
    """Status from PSI above its noise, when the second test finds the shift significant."""
    if p_value >= thresholds.p_value:
        return OK
    if excess_psi >= thresholds.psi_alert:
        return ALERT
    return WARN if excess_psi >= thresholds.psi_warn else OK


def null_spike(
    nulls: int, rows: int, reference_rate: float, reference_rows: int, thresholds: DriftThresholds
) -> bool:
    """Whether a window's null rate rose past the reference's by more than noise and the floor."""
    if rows <= 0:
        return False
    rate = nulls / rows
    pooled = (nulls + reference_rate * reference_rows) / (rows + reference_rows)
    error = math.sqrt(pooled * (1 - pooled) * (1 / rows + 1 / max(reference_rows, 1)))
    return rate - reference_rate > max(
        thresholds.null_spike_increase, thresholds.null_spike_z * error
    )


def collapse(
    bin_counts: npt.NDArray[np.int64],
    std: float | None,
    column: TrackedColumn,
    thresholds: DriftThresholds,
) -> str | None:
    """Why predictions in these bins (with this std) collapsed, or None if they did not."""
    rows = int(bin_counts.sum())
    if rows == 0:
        return None
    top = int(np.argmax(bin_counts))
    share = float(bin_counts[top]) / rows
    reference_std = column.reference_std or 0.0
    narrow = (
        std is not None
        and reference_std > 0
        and std < thresholds.collapse_std_ratio * reference_std
    )
    piled = share > thresholds.collapse_share
    if not (narrow or piled):
        return None
    reference_share = float(shares(column.reference_counts)[top])
    if binomial_tail_bound(share, rows, reference_share) > COLLAPSE_CHANCE:
        return None
    if piled:
        return f"{share:.0%} of {rows} predictions in one bin (reference {reference_share:.0%})"
    return f"std {std:.3g} of {rows} predictions against reference {reference_std:.3g}"


def _recent_collapse(
    column: TrackedColumn,
    index: int,
    totals: WindowTotals,
    thresholds: DriftThresholds,
    collapse_rows: int,
) -> str | None:
    slots = totals.recent_slots[:, index]
    if len(slots) < collapse_rows:
        return None
    counts = np.bincount(slots - column.offset, minlength=column.bins + 1)[: column.bins]
    std = None
    if column.kind == "numeric":
        values = totals.recent_values[:, column.moment]
        values = values[np.isfinite(values)]
        std = float(values.std()) if values.size else None
    reason = collapse(counts, std, column, thresholds)
    return f"recent {reason}" if reason else None


def _window_collapse(
    column: TrackedColumn, totals: WindowTotals, thresholds: DriftThresholds
) -> str | None:
    counts = totals.counts[column.offset : column.null_slot]
    std = None
    if column.kind == "numeric":
        moments = totals.moments
        rows = float(moments.finite[column.moment])
        if rows:
            mean = moments.sums[column.moment] / rows
            std = math.sqrt(max(moments.squares[column.moment] / rows - mean * mean, 0.0))
    reason = collapse(counts, std, column, thresholds)
    return f"window {reason}" if reason else None


def _entropy(layout: WindowLayout, totals: WindowTotals) -> dict[str, float]:
    """Mean row entropy of each probability output with a row in the window."""
    moments = totals.moments
    return {
        output: float(moments.entropy[i] / moments.entropy_rows[i])
        for i, (output, _) in enumerate(layout.probability_outputs)
        if moments.entropy_rows[i] > 0
    }
