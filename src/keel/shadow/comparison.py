"""Row-by-row comparison of two models' outputs: label agreement, score differences, PSI.

Every function takes the primary's and the candidate's values of one output for
the same rows, first dimension the rows, and returns plain numbers: nothing here
knows about requests, records or time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from keel.monitoring.statistics import psi

ComparedAs = Literal["label", "score"]

MAX_CATEGORIES = 30
"""Most label values a confusion matrix shows; the rarest beyond it share one "(other)" cell.

A string label (a product id, say) may take thousands of values, and a
thousand-square matrix tells a reader nothing a list of disagreements does not.
"""

OTHER = "(other)"

SMOOTHING = 0.5
"""Count added to every bin before PSI (Jeffreys' prior).

A few hundred rows leave some bins empty on one side by chance; flooring an
empty share at 1e-4 (as the drift windows do for thousands of rows) would turn
one stray row into a PSI of 0.7. Half a count keeps a bin of 1 against 0 at
ln(3) times its share, and identical counts still give exactly zero.
"""

DECILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True, eq=False)
class LabelComparison:
    """How often two classifiers gave the same label, and what they confused."""

    agreeing: npt.NDArray[np.bool_]
    """Per row: every label of the row is the same on both sides."""
    categories: tuple[Any, ...]
    """Label values (JSON scalars), in the confusion matrix's order; maybe "(other)" last."""
    confusion: npt.NDArray[np.int64]
    """(categories, categories): rows the primary's label, columns the candidate's."""
    psi: float

    @property
    def agreement(self) -> float | None:
        return float(self.agreeing.mean()) if self.agreeing.size else None


@dataclass(frozen=True, eq=False)
class ScoreComparison:
    """How far apart two models' float outputs are, element by element."""

    row_difference: npt.NDArray[np.float64]
    """Per row: the largest absolute difference of its elements (inf where one side is NaN)."""
    within_tolerance: npt.NDArray[np.bool_]
    """Per row: every element within the tolerance of the primary's."""
    mean_abs_diff: float | None
    p99_abs_diff: float | None
    max_abs_diff: float | None
    correlation: tuple[float | None, ...]
    """Pearson correlation per element (one entry for a scalar output)."""
    psi_by_element: tuple[float | None, ...]
    non_finite_rows: int
    """Rows with a NaN or infinity on either side, left out of the differences' statistics."""

    @property
    def agreement(self) -> float | None:
        return float(self.within_tolerance.mean()) if self.within_tolerance.size else None

    @property
    def psi(self) -> float | None:
        """The largest PSI of any element: the one column that shifted most."""
        known = [value for value in self.psi_by_element if value is not None]
        return max(known) if known else None


def rows_equal(primary: npt.NDArray[Any], candidate: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Per row, whether every element of a label output is the same on both sides."""
    rows = primary.shape[0]
    return np.asarray((primary == candidate).reshape(rows, -1).all(axis=1), dtype=np.bool_)


def element_differences(
    primary: npt.NDArray[Any], candidate: npt.NDArray[Any]
) -> npt.NDArray[np.float64]:
    """``|primary - candidate|`` per row and element (rows x width), as the report counts it.

    The same NaN (or infinity) on both sides is agreement; NaN against a number is
    the worst disagreement there is (infinite). Values near the float limit may
    overflow into infinite differences: a statistic that ends up not finite is
    reported as None.
    """
    rows = primary.shape[0]
    p = np.asarray(primary, dtype=np.float64).reshape(rows, -1)
    c = np.asarray(candidate, dtype=np.float64).reshape(rows, -1)
    same = (p == c) | (np.isnan(p) & np.isnan(c))
    with np.errstate(over="ignore", invalid="ignore"):
        difference = np.where(same, 0.0, np.abs(p - c))
        return np.where(np.isnan(difference), np.inf, difference)


def rows_agree(
    labels_equal: Sequence[npt.NDArray[np.bool_]], scores_close: Sequence[npt.NDArray[np.bool_]]
) -> npt.NDArray[np.bool_] | None:
    """Per row, whether the models agree; None when no output could be compared.

    Rows agree on the first label output where there is one (a classifier's answer
    is its label), else when every float output is within the tolerance. The
    report and the live gauges both judge by this rule.
    """
    if labels_equal:
        return labels_equal[0]
    return np.logical_and.reduce(scores_close) if scores_close else None


def compared_as(dtype: np.dtype[Any], declared_kind: str | None = None) -> ComparedAs:
    """Compare labels by equality and everything float by distance.

    The signature's kind wins where it is known; otherwise integers, booleans and
    strings are labels and floats are scores.
    """
    if declared_kind is not None:
        return "label" if declared_kind == "label" else "score"
    return "score" if dtype.kind in "fc" else "label"


def compare_labels(
    primary: npt.NDArray[Any], candidate: npt.NDArray[Any], *, max_categories: int = MAX_CATEGORIES
) -> LabelComparison:
    """Agreement per row, the confusion matrix primary x candidate, and PSI over the labels."""
    primary, candidate = _comparable_labels(primary, candidate)
    agreeing = rows_equal(primary, candidate)
    values, codes = np.unique(
        np.concatenate([primary.ravel(), candidate.ravel()]), return_inverse=True
    )
    codes = codes.ravel()
    counts = np.bincount(codes, minlength=values.size)
    if values.size > max_categories:
        # Keep the commonest, in their natural order, and fold the rest into one cell.
        kept = np.sort(np.argsort(-counts, kind="stable")[: max_categories - 1])
        fold = np.full(values.size, kept.size, dtype=np.int64)
        fold[kept] = np.arange(kept.size)
        codes = fold[codes]
        categories = (*(_json_scalar(v) for v in values[kept]), OTHER)
    else:
        categories = tuple(_json_scalar(v) for v in values)
    size = len(categories)
    half = primary.size
    pairs = codes[:half] * size + codes[half:]
    confusion = np.bincount(pairs, minlength=size * size).reshape(size, size).astype(np.int64)
    return LabelComparison(
        agreeing=agreeing,
        categories=categories,
        confusion=confusion,
        psi=smoothed_psi(confusion.sum(axis=1), confusion.sum(axis=0)),
    )


def compare_scores(
    primary: npt.NDArray[Any], candidate: npt.NDArray[Any], *, tolerance: float
) -> ScoreComparison:
    """Absolute differences, Pearson correlation and PSI of two float outputs."""
    rows = primary.shape[0]
    p = np.asarray(primary, dtype=np.float64).reshape(rows, -1)
    c = np.asarray(candidate, dtype=np.float64).reshape(rows, -1)
    finite = np.isfinite(p) & np.isfinite(c)
    difference = element_differences(p, c)
    with np.errstate(over="ignore", invalid="ignore"):
        row_difference = difference.max(axis=1) if p.shape[1] else np.zeros(rows)
        finite_differences = difference[finite]
        return ScoreComparison(
            row_difference=row_difference,
            within_tolerance=row_difference <= tolerance,
            mean_abs_diff=_statistic(finite_differences, np.mean),
            p99_abs_diff=_statistic(finite_differences, lambda d: np.quantile(d, 0.99)),
            max_abs_diff=_statistic(finite_differences, np.max),
            correlation=tuple(
                pearson(p[:, j][finite[:, j]], c[:, j][finite[:, j]]) for j in range(p.shape[1])
            ),
            psi_by_element=tuple(decile_psi(p[:, j], c[:, j]) for j in range(p.shape[1])),
            non_finite_rows=int((~finite).any(axis=1).sum()),
        )


def pearson(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float | None:
    """Pearson correlation of two samples; None where it is undefined (constant or < 2 rows)."""
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    # Correlation does not change with scale; dividing by the largest magnitude first
    # keeps squares of values near the float limit finite.
    dx, dy = _centred(x), _centred(y)
    denominator = float(np.sqrt(np.dot(dx, dx) * np.dot(dy, dy)))
    if not denominator > 0.0:
        return None
    return float(np.clip(np.dot(dx, dy) / denominator, -1.0, 1.0))


def _centred(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    scaled = values / np.max(np.abs(values))
    centred: npt.NDArray[np.float64] = scaled - scaled.mean()
    return centred / max(float(np.max(np.abs(centred))), np.finfo(np.float64).tiny)


def smoothed_psi(primary_counts: npt.ArrayLike, candidate_counts: npt.ArrayLike) -> float:
    """PSI of the candidate's counts against the primary's, each bin given :data:`SMOOTHING`."""
    p = np.asarray(primary_counts, dtype=np.float64) + SMOOTHING
    c = np.asarray(candidate_counts, dtype=np.float64) + SMOOTHING
    return psi(p, c)


def decile_psi(
    primary: npt.NDArray[np.float64], candidate: npt.NDArray[np.float64]
) -> float | None:
    """PSI over the primary's deciles (bins closed on the right); None without finite values."""
    p = primary[np.isfinite(primary)]
    c = candidate[np.isfinite(candidate)]
    if p.size == 0 or c.size == 0:
        return None
    edges = decile_edges(p)
    bins = edges.size + 1
    p_counts = np.bincount(np.searchsorted(edges, p, side="left"), minlength=bins)
    c_counts = np.bincount(np.searchsorted(edges, c, side="left"), minlength=bins)
    return smoothed_psi(p_counts, c_counts)


def decile_edges(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Interior edges at the deciles of ``values``, ties merged.

    A constant sample gets edges just below and at its value, so a candidate
    that moves either way leaves the primary's bin.
    """
    edges = np.unique(np.quantile(values, DECILES))
    if edges.size == 1:
        edges = np.array([np.nextafter(edges[0], -np.inf), edges[0]])
    return edges


def _comparable_labels(
    primary: npt.NDArray[Any], candidate: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Labels both sides can be compared and sorted as: strings if either side has strings."""
    if primary.dtype.kind in "OUS" or candidate.dtype.kind in "OUS":
        return _as_text(primary), _as_text(candidate)
    if primary.dtype.kind == "b" and candidate.dtype.kind == "b":
        return primary, candidate
    # An int32 label against an int64 one is the same label; a bool against an int is 0/1.
    return primary.astype(np.int64), candidate.astype(np.int64)


def _as_text(values: npt.NDArray[Any]) -> npt.NDArray[np.str_]:
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8", errors="replace")
    return np.asarray([str(v) for v in values.ravel()], dtype=np.str_).reshape(values.shape)


def _json_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _statistic(values: npt.NDArray[np.float64], reduce: Any) -> float | None:
    if not values.size:
        return None
    result = float(reduce(values))
    return result if np.isfinite(result) else None


def label_names(categories: Sequence[Any], names: Sequence[str] | None) -> list[str] | None:
    """The signature's label names for integer labels that index them, else None."""
    if not names:
        return None
    if all(
        c == OTHER or (isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(names))
        for c in categories
    ):
        return [OTHER if c == OTHER else names[c] for c in categories]
    return None
