"""Where each observed column's counts live in a drift window, derived from the reference.

Every column gets a run of count slots in one flat vector: its reference bins
(numeric: the reference's quantile bins; categorical: the reference's levels
then "other" for anything unseen; text: its most frequent values then
"other"), and after them one slot for nulls. Binning a batch (``binning``)
turns it into one slot index per row and column, so adding a batch to a
window is a single ``np.bincount``.

Numeric prediction columns also keep moments (for their spread) and
probability outputs their entropy: per row, one matrix whose column sums are
what a window adds up (see :class:`Moments`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from keel.monitoring.binning import CodedColumn, NamedColumn, NumericGroup, Role
from keel.monitoring.columns import BOOL_LEVELS
from keel.monitoring.statistics import row_entropy
from keel.reference import CategoricalStats, NumericStats, ReferenceStats, TextStats
from keel.signature import Signature

ColumnKind = Literal["numeric", "categorical", "text"]
OTHER = "other"
"""Bin name of the values the reference never saw."""


@dataclass(frozen=True, eq=False)
class TrackedColumn:
    """One column a window counts, where its counts live, and its reference."""

    name: str
    role: Role
    kind: ColumnKind
    offset: int
    """First count slot; ``bins`` distribution slots, then the null slot."""
    bins: int
    position: int
    """Column of this column's slots in a binned batch (numeric columns come first)."""
    reference_counts: npt.NDArray[np.int64]
    reference_rows: int
    reference_null_rate: float
    reference_mean: float | None
    reference_std: float | None
    moment: int = -1
    """Index among the numeric prediction columns, which keep moments; -1 for others."""

    @property
    def null_slot(self) -> int:
        """The count slot of null rows."""
        return self.offset + self.bins

    @property
    def reference_values(self) -> int:
        """Non-null reference rows, the sample size the reference's shares rest on."""
        return int(self.reference_counts.sum())


@dataclass(frozen=True)
class Moments:
    """Column sums of a batch's or window's moment matrix, split into what they mean."""

    sums: npt.NDArray[np.float64]
    """Per numeric prediction column, sum of (value - reference mean) over finite values."""
    squares: npt.NDArray[np.float64]
    finite: npt.NDArray[np.float64]
    entropy: npt.NDArray[np.float64]
    """Per probability output, sum of row entropies over rows without NaN."""
    entropy_rows: npt.NDArray[np.float64]

    @classmethod
    def split(cls, totals: npt.NDArray[np.float64], numeric: int) -> Moments:
        """Read the sums of a moment matrix with ``numeric`` numeric prediction columns."""
        m = numeric
        entropy_rows = totals[3 * m :]
        half = len(entropy_rows) // 2
        return cls(
            totals[:m],
            totals[m : 2 * m],
            totals[2 * m : 3 * m],
            entropy_rows[:half],
            entropy_rows[half:],
        )


@dataclass(frozen=True)
class BinnedBatch:
    """One batch, reduced to what a window adds up."""

    slots: npt.NDArray[np.int64]
    """(columns, rows) count slot of each value."""
    moments: npt.NDArray[np.float64]
    """(moment terms, rows) per-row terms of :class:`Moments`."""
    predictions: npt.NDArray[np.float64]
    """(numeric prediction columns, rows) values, NaN where null."""

    @property
    def rows(self) -> int:
        """Rows in the batch."""
        return int(self.slots.shape[1])


@dataclass(frozen=True, eq=False)
class WindowLayout:
    """Every column a window counts, derived once from a signature and reference stats."""

    columns: tuple[TrackedColumn, ...]
    numeric: NumericGroup
    categorical: tuple[tuple[Role, CodedColumn | NamedColumn], ...]
    size: int
    """Count slots in all."""
    probability_outputs: tuple[tuple[str, tuple[str, ...]], ...]
    """Probability outputs and their prediction columns, for the entropy."""
    moment_positions: npt.NDArray[np.int64]
    """Positions of the numeric prediction columns in the numeric matrix, by moment index."""
    moment_centres: npt.NDArray[np.float64]
    """(column, 1) reference means of the numeric prediction columns: moments are kept of
    values minus these, which keeps the variance exact when the spread is small against the
    mean."""

    @property
    def predictions(self) -> tuple[TrackedColumn, ...]:
        """The tracked prediction columns."""
        return tuple(c for c in self.columns if c.role == "prediction")

    def bin(
        self, features: Mapping[str, npt.NDArray[Any]], predictions: Mapping[str, npt.NDArray[Any]]
    ) -> BinnedBatch:
        """Bin one batch; every tracked column must be present, all of one length.

        Raises KeyError for a missing column and ValueError for columns of other lengths.
        """
        rows = _rows(features, predictions)
        numeric = self.numeric.values(rows, features, predictions)
        parts = [self.numeric.slots(numeric)]
        parts += [
            encoder.slots((features if role == "feature" else predictions)[encoder.name])
            for role, encoder in self.categorical
        ]
        values = numeric[self.moment_positions]
        return BinnedBatch(np.vstack(parts), self._moments(rows, values, predictions), values)

    def _moments(
        self,
        rows: int,
        values: npt.NDArray[np.float64],
        predictions: Mapping[str, npt.NDArray[Any]],
    ) -> npt.NDArray[np.float64]:
        finite = np.isfinite(values)
        shifted = np.where(finite, values - self.moment_centres, 0.0)
        entropy = np.empty((len(self.probability_outputs), rows))
        for i, (_, names) in enumerate(self.probability_outputs):
            entropy[i] = row_entropy(np.array([predictions[n] for n in names]).T)
        known = ~np.isnan(entropy)
        terms = (shifted, shifted * shifted, finite, np.where(known, entropy, 0.0), known)
        return np.concatenate(terms, axis=0, dtype=np.float64)

    @classmethod
    def from_reference(cls, signature: Signature, reference: ReferenceStats) -> WindowLayout:
        """Track every feature and prediction column the reference has statistics for."""
        builder = _LayoutBuilder()
        float32 = signature.float32_features
        for feature in signature.features:
            stats = reference.features.get(feature.name)
            if stats is None:
                continue
            if isinstance(stats, NumericStats):
                builder.numeric(feature.name, "feature", stats, float32=feature.name in float32)
            elif isinstance(stats, CategoricalStats):
                levels = BOOL_LEVELS if feature.dtype == "bool" else tuple(feature.levels or ())
                builder.coded(feature.name, stats, levels)
            else:
                builder.named(feature.name, "feature", stats)
        for name, stats in reference.predictions.items():
            if isinstance(stats, NumericStats):
                builder.numeric(name, "prediction", stats, float32=False)
            else:
                builder.named(name, "prediction", stats)
        outputs = tuple(
            (o.name, _columns_of(o.name, reference.predictions))
            for o in signature.outputs
            if o.kind == "probability" and _columns_of(o.name, reference.predictions)
        )
        return builder.build(outputs)


class _LayoutBuilder:
    """Collects tracked columns; numeric ones first, in the order ``bin`` stacks them."""

    def __init__(self) -> None:
        self._numeric: list[tuple[str, Role, NumericStats, npt.NDArray[np.float64]]] = []
        self._categorical: list[tuple[str, Role, ColumnKind, CategoricalStats | TextStats]] = []
        self._codes: dict[str, tuple[str, ...]] = {}

    def numeric(self, name: str, role: Role, stats: NumericStats, *, float32: bool) -> None:
        edges = np.asarray(stats.bin_edges, dtype=np.float64)
        if float32:
            # Live values arrive rounded to float32 by the input tensor; rounding the edges
            # the same way keeps a reference value that sits on an edge in its bin.
            edges = edges.astype(np.float32).astype(np.float64)
        self._numeric.append((name, role, stats, edges))

    def coded(self, name: str, stats: CategoricalStats, levels: Sequence[str]) -> None:
        self._categorical.append((name, "feature", "categorical", stats))
        self._codes[name] = tuple(levels)

    def named(self, name: str, role: Role, stats: CategoricalStats | TextStats) -> None:
        kind: ColumnKind = "text" if isinstance(stats, TextStats) else "categorical"
        self._categorical.append((name, role, kind, stats))

    def build(self, outputs: tuple[tuple[str, tuple[str, ...]], ...]) -> WindowLayout:
        columns = self._numeric_columns()
        numeric = self._numeric_group(columns)
        offset = columns[-1].null_slot + 1 if columns else 0
        encoders: list[tuple[Role, CodedColumn | NamedColumn]] = []
        for i, (name, role, kind, level_stats) in enumerate(self._categorical):
            names, counts = _reference_bins(level_stats)
            position = len(self._numeric) + i
            columns.append(_tracked(name, role, kind, offset, position, counts, level_stats, -1))
            encoders.append((role, self._encoder(name, offset, names)))
            offset += len(counts) + 1
        moment_columns = [c for c in columns if c.moment >= 0]
        return WindowLayout(
            columns=tuple(columns),
            numeric=numeric,
            categorical=tuple(encoders),
            size=offset,
            probability_outputs=outputs,
            moment_positions=np.array([c.position for c in moment_columns], dtype=np.int64),
            moment_centres=np.array([c.reference_mean or 0.0 for c in moment_columns]).reshape(
                -1, 1
            ),
        )

    def _numeric_columns(self) -> list[TrackedColumn]:
        columns: list[TrackedColumn] = []
        offset = moments = 0
        for position, (name, role, stats, _) in enumerate(self._numeric):
            counts = np.asarray(stats.bin_counts or [0], dtype=np.int64)
            moment = moments if role == "prediction" else -1
            moments += role == "prediction"
            columns.append(_tracked(name, role, "numeric", offset, position, counts, stats, moment))
            offset += len(counts) + 1
        return columns

    def _numeric_group(self, columns: list[TrackedColumn]) -> NumericGroup:
        widest = max((len(edges) for *_, edges in self._numeric), default=0)
        edges = np.full((widest, len(self._numeric), 1), np.inf)
        for i, (*_, column_edges) in enumerate(self._numeric):
            edges[: len(column_edges), i, 0] = column_edges
        return NumericGroup(
            names=tuple(name for name, *_ in self._numeric),
            roles=tuple(role for _, role, *_ in self._numeric),
            edges=edges,
            offsets=np.array([c.offset for c in columns], dtype=np.int64).reshape(-1, 1),
            null_slots=np.array([c.null_slot for c in columns], dtype=np.int64).reshape(-1, 1),
        )

    def _encoder(self, name: str, offset: int, names: list[str]) -> CodedColumn | NamedColumn:
        levels = self._codes.get(name)
        if levels is None:
            return NamedColumn.of(name, offset, names[:-1])
        index = {level: i for i, level in enumerate(names[:-1])}
        other = len(names) - 1
        table = np.array([index.get(level, other) for level in levels], dtype=np.int64)
        return CodedColumn(name, offset, table, other, other + 1)


def _tracked(
    name: str,
    role: Role,
    kind: ColumnKind,
    offset: int,
    position: int,
    counts: npt.NDArray[np.int64],
    stats: NumericStats | CategoricalStats | TextStats,
    moment: int,
) -> TrackedColumn:
    # The window counts NaN with the nulls, so the reference's NaN count goes with them too.
    nan_count = stats.nan_count if isinstance(stats, NumericStats) else 0
    null_rate = (stats.null_count + nan_count) / stats.count if stats.count else 0.0
    return TrackedColumn(
        name=name,
        role=role,
        kind=kind,
        offset=offset,
        bins=len(counts),
        position=position,
        reference_counts=counts,
        reference_rows=stats.count,
        reference_null_rate=null_rate,
        reference_mean=stats.mean if isinstance(stats, NumericStats) else None,
        reference_std=stats.std if isinstance(stats, NumericStats) else None,
        moment=moment,
    )


def _reference_bins(stats: CategoricalStats | TextStats) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Bin names and reference counts: the known values, then "other"."""
    known = stats.frequencies if isinstance(stats, CategoricalStats) else stats.top
    rest = stats.count - stats.null_count - sum(known.values())
    names = [*known, OTHER]
    return names, np.array([*known.values(), max(rest, 0)], dtype=np.int64)


def _columns_of(output: str, predictions: Mapping[str, object]) -> tuple[str, ...]:
    return tuple(n for n in predictions if n == output or n.startswith(f"{output}["))


def _rows(
    features: Mapping[str, npt.NDArray[Any]], predictions: Mapping[str, npt.NDArray[Any]]
) -> int:
    # Columns of other lengths make the stacking in ``bin`` raise ValueError.
    for columns in (features, predictions):
        for column in columns.values():
            return len(column)
    return 0
