"""How a batch's values become count slots: numeric bins, level codes and value names.

Each binner maps one batch of a column (or, for numbers, of every numeric
column at once) to the index of the count slot each value falls in, with its
own slot for nulls; the window adds them up with one ``np.bincount``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# The reference names levels with this rule; the window must name them the same way.
from keel.reference import _label as level_name

Role = Literal["feature", "prediction"]


@dataclass(frozen=True, eq=False)
class NumericGroup:
    """Every numeric column of a window, binned by one vectorised comparison."""

    names: tuple[str, ...]
    roles: tuple[Role, ...]
    edges: npt.NDArray[np.float64]
    """(edge rank, column, 1): every column's interior edges, padded with +inf."""
    offsets: npt.NDArray[np.int64]
    """(column, 1): each column's first count slot."""
    null_slots: npt.NDArray[np.int64]
    """(column, 1): each column's null slot."""

    def values(
        self,
        rows: int,
        features: Mapping[str, npt.NDArray[Any]],
        predictions: Mapping[str, npt.NDArray[Any]],
    ) -> npt.NDArray[np.float64]:
        """The batch's numeric columns as one (columns, rows) float64 matrix."""
        if not self.names:
            return np.empty((0, rows))
        return np.array(
            [
                (features if role == "feature" else predictions)[name]
                for name, role in zip(self.names, self.roles, strict=True)
            ],
            dtype=np.float64,
        )

    def slots(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Count slot of every value: bin i holds (e[i-1], e[i]]; NaN goes to the null slot."""
        # Bins are closed on the right, as in reference.bin_counts. One (columns, rows)
        # plane per edge rank, added into the smallest integer that holds the count:
        # 1,024 rows of breast-cancer's 32 columns take 93 ns a row, against 149 ns for
        # one comparison of every value with every edge summed over the leading axis,
        # whose temporaries are ten times the size.
        index = np.zeros(values.shape, dtype=np.min_scalar_type(len(self.edges)))
        above = np.empty(values.shape, dtype=np.bool_)
        for edge in self.edges:
            np.greater(values, edge, out=above)
            index += above
        return np.where(np.isnan(values), self.null_slots, index + self.offsets)


@dataclass(frozen=True, eq=False)
class CodedColumn:
    """A bool or categorical feature observed as level codes, mapped to reference bins."""

    name: str
    offset: int
    table: npt.NDArray[np.int64]
    """Reference bin of each level code."""
    other: int
    null: int

    def slots(self, codes: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """Count slot of every code (-1 is missing; codes past the levels are "other")."""
        codes = np.asarray(codes, dtype=np.int64)
        known = (codes >= 0) & (codes < len(self.table))
        bins = np.where(known, self.table[np.where(known, codes, 0)], self.other)
        return np.where(codes < 0, self.null, bins) + self.offset


@dataclass(frozen=True, eq=False)
class NamedColumn:
    """A string feature or a label prediction, mapped to reference bins by value name."""

    name: str
    offset: int
    index: Mapping[str, int]
    other: int
    null: int
    integer_keys: npt.NDArray[np.int64]
    """Sorted levels that name integers, for integer label arrays (the common case)."""
    integer_bins: npt.NDArray[np.int64]

    @classmethod
    def of(cls, name: str, offset: int, levels: Sequence[str]) -> NamedColumn:
        """Bins ``levels`` in order, then "other", then null."""
        index = {level: i for i, level in enumerate(levels)}
        integers = sorted((int(k), i) for k, i in index.items() if _names_integer(k))
        return cls(
            name,
            offset,
            index,
            len(levels),
            len(levels) + 1,
            np.array([k for k, _ in integers], dtype=np.int64),
            np.array([i for _, i in integers], dtype=np.int64),
        )

    def slots(self, values: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
        """Count slot of every value; None and NaN are null, unseen values "other"."""
        array = np.asarray(values)
        if array.dtype.kind in "iu" and self.integer_keys.size:
            at = np.minimum(np.searchsorted(self.integer_keys, array), self.integer_keys.size - 1)
            found = self.integer_keys[at] == array
            return np.where(found, self.integer_bins[at], self.other) + self.offset
        if array.dtype.kind in "biuf":
            # A few distinct labels per batch: name each once, not each row.
            unique, inverse = np.unique(array, return_inverse=True)
            table = np.array([self._bin(v) for v in unique.tolist()], dtype=np.int64)
            return table[inverse.reshape(-1)] + self.offset
        return np.fromiter((self._bin(v) for v in array), np.int64, array.size) + self.offset

    def _bin(self, value: Any) -> int:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return self.null
        return self.index.get(level_name(value), self.other)


def _names_integer(level: str) -> bool:
    try:
        return str(int(level)) == level
    except ValueError:
        return False
