"""Deterministic records a signature accepts, for golden examples when no real data is given."""

from __future__ import annotations

import numpy as np

from keel.signature.feature import INT64_MAX, INT64_MIN, Feature
from keel.signature.signature import Signature
from keel.signature.values import FLOAT32_MAX, FeatureValue

# Without declared bounds there is no scale to respect; small values keep a model's
# arithmetic well away from overflow while still varying between records.
_UNBOUNDED_SPAN = 10
_NULL_EVERY = 5


def synthetic_records(
    signature: Signature, count: int, seed: int = 0
) -> list[dict[str, FeatureValue]]:
    """Return ``count`` valid, JSON-safe records, the same for the same signature and seed.

    Values stay inside declared bounds and levels (and the float32 range where a
    float32 tensor holds them); every fifth record leaves nullable features null
    so that the missing-value path is exercised too.
    """
    rng = np.random.default_rng(seed)
    float32 = signature.float32_features
    columns = {f.name: _column(f, count, rng, f.name in float32) for f in signature.features}
    return [{name: values[row] for name, values in columns.items()} for row in range(count)]


def _column(
    feature: Feature, count: int, rng: np.random.Generator, float32: bool
) -> list[FeatureValue]:
    values: list[FeatureValue]
    low, high = _span(feature)
    if float32:
        low, high = max(low, -FLOAT32_MAX), min(high, FLOAT32_MAX)
    if feature.dtype == "float":
        # Mixing the bounds rather than adding a scaled width cannot overflow to infinity.
        share = rng.random(count)
        values = [float(v) for v in low * (1.0 - share) + high * share]
    elif feature.dtype == "int":
        first, last = max(int(low), INT64_MIN), min(int(high), INT64_MAX)
        values = [int(v) for v in rng.integers(first, last, count, endpoint=True)]
    elif feature.dtype == "bool":
        values = [bool(v) for v in rng.integers(0, 1, count, endpoint=True)]
    elif feature.dtype == "categorical":
        levels = feature.levels or ()
        values = [levels[int(i)] for i in rng.integers(0, len(levels), count)]
    else:
        values = [f"{feature.name}-{int(i)}" for i in rng.integers(0, 1000, count)]
    if feature.nullable:
        for row in range(_NULL_EVERY - 1, count, _NULL_EVERY):
            values[row] = None
    return values


def _span(feature: Feature) -> tuple[float, float]:
    """Return the declared bounds, filling an open side with a small span."""
    low, high = feature.minimum, feature.maximum
    if low is None:
        low = -_UNBOUNDED_SPAN if high is None else high - _UNBOUNDED_SPAN
    if high is None:
        high = low + _UNBOUNDED_SPAN
    return low, high
