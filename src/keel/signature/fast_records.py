"""An accept-only, vectorised check of JSON records whose features are all floats.

Most tabular models take one float tensor of numeric features, and on the
request path checking a record value by value costs more than running such a
model. This path proves a whole request valid with a few numpy operations and
builds the tensors from the same values; it never refuses anything. Whatever it
cannot prove valid (a missing or unknown field, a null, a string, a bool, NaN,
a value out of bounds) goes to the record validator, which names every
violation, so clients see exactly the errors they always did. A property test
keeps the tensors of both paths identical.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from keel.signature.values import FLOAT32_MAX

if TYPE_CHECKING:
    from keel.signature.signature import Signature

# JSON numbers arrive as float or int; bool is a subclass of int, so types are
# compared exactly rather than with isinstance.
_NUMBER_TYPES = frozenset((float, int))
FLOAT64_MAX = float(np.finfo(np.float64).max)


# Up to this many rows the bounds are checked in Python: each numpy call costs a
# few microseconds, which is more than comparing a handful of rows value by value.
PYTHON_ROWS = 4

Bounds = tuple[Callable[[Sequence[Any]], tuple[Any, ...]] | None, float, float]
"""Positions of a row's values that share one (minimum, maximum); None picks them all."""


@dataclass(frozen=True)
class _FastTensor:
    name: str
    dtype: np.dtype[Any]
    values_of: Callable[[dict[str, Any]], tuple[Any, ...]]
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    groups: tuple[Bounds, ...]

    def tensor(self, rows: list[tuple[Any, ...]]) -> npt.NDArray[Any] | None:
        """The rows as this tensor, or None if any value is NaN, infinite or out of bounds."""
        if 0 < len(rows) <= PYTHON_ROWS:
            # Checked before any array exists, so the values go straight into the
            # tensor's dtype: one numpy call instead of three.
            if not rows_within(rows, self.groups):
                return None
            return np.array(rows, dtype=self.dtype)
        numbers = np.array(rows, dtype=np.float64).reshape(len(rows), len(self.low))
        # NaN fails both comparisons and the bounds are finite, so they refuse it all.
        if not ((numbers >= self.low).all() and (numbers <= self.high).all()):
            return None
        return numbers.astype(self.dtype, copy=False)


@dataclass(frozen=True)
class FloatRecords:
    """Builds the input tensors of valid all-float records, or says it cannot vouch for them."""

    tensors: tuple[_FastTensor, ...]
    width: int

    def arrays(self, records: Sequence[object]) -> dict[str, npt.NDArray[Any]] | None:
        """The model's input tensors, or None when any record needs the full validator."""
        width = self.width
        for record in records:
            # Equal length and every feature present means no unknown field either.
            if type(record) is not dict or len(record) != width:
                return None
        arrays: dict[str, npt.NDArray[Any]] = {}
        try:
            for tensor in self.tensors:
                rows = [tensor.values_of(record) for record in records]  # type: ignore[arg-type]
                if not _NUMBER_TYPES.issuperset(map(type, _flatten(rows))):
                    return None
                built = tensor.tensor(rows)
                if built is None:
                    return None
                arrays[tensor.name] = built
        except (KeyError, OverflowError):
            # A feature is absent, or an integer is too large for a float.
            return None
        return arrays


def rows_within(rows: Iterable[Sequence[Any]], groups: tuple[Bounds, ...]) -> bool:
    """Whether every value is finite and within its group's bounds, checked in Python.

    For a handful of rows this is cheaper than any numpy call.
    """
    for row in rows:
        # NaN and the infinities make the sum non-finite (so might a sum past the
        # float range; such a row takes the slow path, which accepts it).
        if not math.isfinite(sum(row)):
            return False
        for pick, low, high in groups:
            # Sorting floats compares them without the generic protocol: half the
            # cost of min() and max() for a row of thirty.
            values = sorted(row if pick is None else pick(row))
            if values[0] < low or values[-1] > high:
                return False
    return True


def _flatten(rows: list[tuple[Any, ...]]) -> Iterable[Any]:
    return rows[0] if len(rows) == 1 else itertools.chain.from_iterable(rows)


def float_records(signature: Signature) -> FloatRecords | None:
    """The fast path of ``signature``, built once; None when any feature is not a float."""
    cache = signature.compiled_cache
    if "float_records" not in cache:
        cache["float_records"] = _build(signature)
    fast = cache["float_records"]
    return fast if isinstance(fast, FloatRecords) else None


def _build(signature: Signature) -> FloatRecords | None:
    features = {f.name: f for f in signature.features}
    if any(f.dtype != "float" for f in features.values()):
        return None
    if any(tensor.dtype not in ("float32", "float64") for tensor in signature.inputs):
        return None
    covered = {name for tensor in signature.inputs for name in tensor.features}
    if covered != set(features):
        return None
    tensors = []
    for tensor in signature.inputs:
        members = [features[name] for name in tensor.features]
        # A float32 tensor cannot hold a finite value past the float32 range.
        # Bounds are finite so that an infinity fails them just as NaN does.
        limit = FLOAT32_MAX if tensor.dtype == "float32" else FLOAT64_MAX
        low = [-limit if f.minimum is None else max(float(f.minimum), -limit) for f in members]
        high = [limit if f.maximum is None else min(float(f.maximum), limit) for f in members]
        values_of = picker(tuple(tensor.features))
        tensors.append(
            _FastTensor(
                name=tensor.name,
                dtype=np.dtype(tensor.dtype),
                values_of=values_of,
                low=np.array(low, dtype=np.float64),
                high=np.array(high, dtype=np.float64),
                groups=bound_groups(low, high),
            )
        )
    return FloatRecords(tensors=tuple(tensors), width=len(features))


def picker(keys: Sequence[Any]) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter`` that always returns a tuple, even of one item."""
    getter = operator.itemgetter(*keys)
    if len(keys) > 1:
        return getter
    return lambda item: (getter(item),)


def bound_groups(low: Sequence[float], high: Sequence[float]) -> tuple[Bounds, ...]:
    """The positions of a row by the (minimum, maximum) they share, for ``rows_within``."""
    positions: dict[tuple[float, float], list[int]] = {}
    for position, bounds in enumerate(zip(low, high, strict=True)):
        positions.setdefault(bounds, []).append(position)
    if len(positions) == 1:
        ((low_bound, high_bound),) = positions
        return ((None, low_bound, high_bound),)
    return tuple((picker(tuple(p)), b[0], b[1]) for b, p in positions.items())
