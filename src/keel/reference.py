"""Reference statistics of features and predictions, computed once at publish.

They are the baseline that drift and collapse detection compare live traffic
against, so they are deterministic: fixed quantile levels, exact counts, no
random sketches whose results wander from run to run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

# Deciles: ten bins of equal reference mass, the usual basis for PSI.
QUANTILE_LEVELS = tuple(round(i / 10, 1) for i in range(11))
TOP_STRINGS = 20


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NumericStats(_Frozen):
    """Distribution of a numeric column, binned at its reference quantiles."""

    kind: Literal["numeric"] = "numeric"
    count: int
    null_count: int
    null_rate: float
    nan_count: int = 0
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    quantile_levels: list[float]
    quantiles: list[float]
    bin_edges: list[float] = Field(
        description="Interior edges; bins are (-inf, e0], (e0, e1], ..., (e_last, +inf)."
    )
    bin_counts: list[int]


class CategoricalStats(_Frozen):
    """Frequencies of the values of a categorical, boolean or label column."""

    kind: Literal["categorical"] = "categorical"
    count: int
    null_count: int
    null_rate: float
    frequencies: dict[str, int]


class TextStats(_Frozen):
    """Null rate and most frequent values of a free-text column."""

    kind: Literal["text"] = "text"
    count: int
    null_count: int
    null_rate: float
    distinct: int
    top: dict[str, int]


ColumnStats = Annotated[NumericStats | CategoricalStats | TextStats, Field(discriminator="kind")]


class ReferenceStats(_Frozen):
    """Reference statistics of every feature and every prediction column."""

    rows: int
    features: dict[str, ColumnStats]
    predictions: dict[str, ColumnStats]


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def numeric_stats(values: Sequence[Any] | np.ndarray) -> NumericStats:
    """Stats of a numeric column; None counts as null, NaN as NaN, infinities are kept out."""
    raw = np.asarray(values, dtype=object).ravel()
    nulls = np.fromiter((v is None for v in raw), dtype=bool, count=raw.size)
    numbers = raw[~nulls].astype(np.float64)
    nan_count = int(np.isnan(numbers).sum())
    finite = numbers[np.isfinite(numbers)]
    count = int(raw.size)
    null_count = int(nulls.sum())
    if finite.size == 0:
        return NumericStats(
            count=count,
            null_count=null_count,
            null_rate=_rate(null_count, count),
            nan_count=nan_count,
            mean=None,
            std=None,
            min=None,
            max=None,
            quantile_levels=list(QUANTILE_LEVELS),
            quantiles=[],
            bin_edges=[],
            bin_counts=[],
        )
    quantiles = np.quantile(finite, QUANTILE_LEVELS)
    edges = np.unique(quantiles[1:-1])
    return NumericStats(
        count=count,
        null_count=null_count,
        null_rate=_rate(null_count, count),
        nan_count=nan_count,
        mean=float(finite.mean()),
        std=float(finite.std()),
        min=float(finite.min()),
        max=float(finite.max()),
        quantile_levels=list(QUANTILE_LEVELS),
        quantiles=[float(q) for q in quantiles],
        bin_edges=[float(e) for e in edges],
        bin_counts=bin_counts(finite, edges).tolist(),
    )


def bin_counts(values: np.ndarray, edges: np.ndarray | Sequence[float]) -> np.ndarray:
    """Counts of ``values`` in the bins (-inf, e0], (e0, e1], ..., (e_last, +inf)."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def categorical_stats(
    values: Sequence[Any] | np.ndarray, levels: Sequence[str] = ()
) -> CategoricalStats:
    """Frequencies of each value (every declared level present, even at zero)."""
    raw = list(np.asarray(values, dtype=object).ravel())
    present = [_label(v) for v in raw if not _is_null(v)]
    counts = Counter(present)
    frequencies = {level: counts.pop(level, 0) for level in levels}
    frequencies.update(sorted(counts.items()))
    null_count = len(raw) - len(present)
    return CategoricalStats(
        count=len(raw),
        null_count=null_count,
        null_rate=_rate(null_count, len(raw)),
        frequencies=frequencies,
    )


def text_stats(values: Sequence[Any] | np.ndarray) -> TextStats:
    """Null rate, number of distinct values and the most frequent ones."""
    raw = list(np.asarray(values, dtype=object).ravel())
    present = [str(v) for v in raw if not _is_null(v)]
    counts = Counter(present)
    null_count = len(raw) - len(present)
    return TextStats(
        count=len(raw),
        null_count=null_count,
        null_rate=_rate(null_count, len(raw)),
        distinct=len(counts),
        top=dict(counts.most_common(TOP_STRINGS)),
    )


def _label(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def prediction_columns(
    name: str, values: np.ndarray, labels: Sequence[str] | None
) -> dict[str, np.ndarray]:
    """Split an output array into named 1-D columns: ``name`` or ``name[label]``."""
    array = np.asarray(values)
    if array.ndim <= 1 or (array.ndim == 2 and array.shape[1] == 1):
        return {name: array.reshape(-1)}
    flat = array.reshape(array.shape[0], -1)
    names = list(labels) if labels and len(labels) == flat.shape[1] else range(flat.shape[1])
    return {f"{name}[{label}]": flat[:, i] for i, label in enumerate(names)}


def prediction_stats(
    outputs: Mapping[str, np.ndarray],
    kinds: Mapping[str, str],
    labels: Mapping[str, Sequence[str] | None],
) -> dict[str, ColumnStats]:
    """Stats of every prediction column: label outputs as frequencies, the rest as numbers."""
    stats: dict[str, ColumnStats] = {}
    for name, values in outputs.items():
        for column, data in prediction_columns(name, values, labels.get(name)).items():
            if kinds.get(name) == "label":
                stats[column] = categorical_stats(data)
            else:
                stats[column] = numeric_stats(data)
    return stats
