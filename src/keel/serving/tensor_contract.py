"""The signature's rules applied to ready-made tensors (the v2 protocol path), vectorised.

Records are validated feature by feature; v2 clients send the model's input
tensors directly. Those tensors still obey the signature: each column belongs
to a feature, so bounds, NaN and indicator rules are checked column-wise with
a few numpy comparisons built once per model version, not per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from keel.errors import FieldError, InvalidRequest
from keel.runtimes import TensorSpec
from keel.serving.protocols import datatype_of
from keel.signature import Feature, Signature
from keel.signature.arrays import feature_width

MAX_REPORTED = 20


@dataclass(frozen=True)
class ColumnRules:
    """Per-column bounds of one numeric input tensor, and which feature owns each column."""

    owners: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray
    nan_ok: np.ndarray
    # Whether the feature has a missing indicator, and its value (NaN for a NaN one).
    has_indicator: np.ndarray
    indicator: np.ndarray
    # The bounds made finite: a value between them is valid whatever else is declared,
    # so clean tensors pass two comparisons and skip the NaN and indicator analysis.
    low_finite: np.ndarray
    high_finite: np.ndarray
    # The finite bounds in float32, rounded inward, for float32 tensors (the usual
    # kind): compared without converting the request to float64 first.
    low_float32: np.ndarray
    high_float32: np.ndarray

    def within_bounds(self, array: np.ndarray) -> bool:
        """Whether every value lies between its column's finite bounds (so: no NaN, no inf)."""
        values = array if array.ndim == 2 else array.reshape(array.shape[0], -1)
        if values.dtype == np.float32:
            low, high = self.low_float32, self.high_float32
        else:
            values = values.astype(np.float64, copy=False)
            low, high = self.low_finite, self.high_finite
        return bool(np.logical_and.reduce((values >= low) & (values <= high), axis=None))


@dataclass(frozen=True)
class TensorContract:
    """What one model version accepts as input tensors: names, dtypes, shapes and value rules."""

    specs: Mapping[str, TensorSpec]
    rules: Mapping[str, ColumnRules]

    def check(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise InvalidRequest naming the tensor or feature, row and rule of every violation."""
        if self._clean(inputs):
            return
        errors: list[FieldError] = []
        rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        for name in inputs:
            if name not in self.specs:
                errors.append(
                    FieldError(
                        None,
                        name,
                        "unknown_field",
                        f"the model has no input '{name}' (inputs: {sorted(self.specs)})",
                    )
                )
        for name, spec in self.specs.items():
            array = inputs.get(name)
            if array is None:
                errors.append(FieldError(None, name, "required", f"input '{name}' is missing"))
                continue
            problem = _shape_problem(spec, array)
            if problem:
                errors.append(FieldError(None, name, "type", problem))
            elif name in self.rules:
                errors.extend(_value_errors(self.rules[name], array))
        if not errors and len(rows) > 1:
            errors.append(FieldError(None, "", "type", "inputs disagree on the batch size"))
        if errors:
            raise InvalidRequest(errors[:MAX_REPORTED])

    def _clean(self, inputs: Mapping[str, np.ndarray]) -> bool:
        """Whether ``inputs`` break no rule: the request path's question, answered cheaply.

        False is not a verdict: ``check`` then looks again and names what is wrong.
        """
        if len(inputs) != len(self.specs):
            return False
        rows = -1
        for name, array in inputs.items():
            spec = self.specs.get(name)
            if spec is None or _shape_problem(spec, array) is not None:
                return False
            if rows != array.shape[0]:
                if rows >= 0:
                    return False
                rows = array.shape[0]
            rules = self.rules.get(name)
            if rules is not None and not rules.within_bounds(array):
                return False
        return True


def build_contract(signature: Signature, specs: tuple[TensorSpec, ...]) -> TensorContract:
    """Precompute the per-column rules of every numeric input tensor."""
    features = {f.name: f for f in signature.features}
    rules = {}
    for tensor in signature.inputs:
        if tensor.dtype == "string":
            continue
        columns: list[tuple[str, float, float, bool, float, bool]] = []
        for name in tensor.features:
            feature = features[name]
            width = feature_width(feature, tensor.dtype)
            columns.extend([(name, *_bounds(feature, width))] * width)
        low = np.array([c[1] for c in columns], dtype=np.float64)
        high = np.array([c[2] for c in columns], dtype=np.float64)
        largest = np.finfo(np.float64).max
        rules[tensor.name] = ColumnRules(
            owners=tuple(c[0] for c in columns),
            low=low,
            high=high,
            nan_ok=np.array([c[3] for c in columns], dtype=bool),
            indicator=np.array([c[4] for c in columns], dtype=np.float64),
            has_indicator=np.array([c[5] for c in columns], dtype=bool),
            low_finite=np.maximum(low, -largest),
            high_finite=np.minimum(high, largest),
            low_float32=_float32_inward(low, upward=True),
            high_float32=_float32_inward(high, upward=False),
        )
    return TensorContract({s.name: s for s in specs}, rules)


def _float32_inward(bounds: np.ndarray, upward: bool) -> np.ndarray:
    """float64 bounds as the nearest finite float32 values on their inner side.

    A float32 value is >= a low bound exactly when it is >= the smallest float32 at
    or above it (and the mirror for a high bound), so the comparison stays exact;
    an infinite bound becomes float32's largest finite value, so infinity fails.
    """
    largest = np.finfo(np.float32).max
    clipped = np.clip(bounds, -largest, largest)
    rounded = clipped.astype(np.float32)
    toward = np.float32(np.inf if upward else -np.inf)
    off = rounded < clipped if upward else rounded > clipped
    inward: np.ndarray = np.where(off, np.nextafter(rounded, toward), rounded).astype(np.float32)
    return inward


def _bounds(feature: Feature, width: int) -> tuple[float, float, bool, float, bool]:
    """(low, high, NaN allowed, indicator, has an indicator) of each column the feature fills."""
    has_indicator = feature.missing == "indicator" and feature.dtype in ("float", "int", "bool")
    indicator = float(feature.missing_indicator) if has_indicator else np.nan  # type: ignore[arg-type]
    if feature.dtype == "categorical":
        levels = len(feature.levels or ())
        high = 1.0 if width > 1 else float(levels - 1)
        return 0.0, high, False, np.nan, False
    if feature.dtype == "bool":
        return 0.0, 1.0, False, indicator, has_indicator
    low = -np.inf if feature.minimum is None else float(feature.minimum)
    high = np.inf if feature.maximum is None else float(feature.maximum)
    return low, high, feature.allow_nan, indicator, has_indicator


def _shape_problem(spec: TensorSpec, array: np.ndarray) -> str | None:
    # Comparing dtypes is cheap; their names (for the message) are not.
    if array.dtype != spec.numpy_dtype and not (
        spec.dtype == "object" and array.dtype.kind in "OU"
    ):
        got = "object" if array.dtype.kind in "OU" else array.dtype.name
        return f"input '{spec.name}' must be {_v2(spec.dtype)}, got {_v2(got)}"
    if array.ndim != len(spec.shape) or any(
        d is not None and d != actual for d, actual in zip(spec.shape, array.shape, strict=False)
    ):
        dims = ", ".join("-1" if d is None else str(d) for d in spec.shape)
        return f"input '{spec.name}' must have shape [{dims}], got {list(array.shape)}"
    if array.ndim == 0 or array.shape[0] == 0:
        return f"input '{spec.name}' holds no rows"
    return None


def _v2(dtype: str) -> str:
    return datatype_of(np.dtype(dtype))


def _value_errors(rules: ColumnRules, array: np.ndarray) -> list[FieldError]:
    values = array.reshape(array.shape[0], -1).astype(np.float64, copy=False)
    is_nan = np.isnan(values)
    # NaN stands for "no indicator" in ``indicator`` too, so only columns that have one
    # may take it: a NaN where the feature has none is refused unless allow_nan.
    is_indicator = rules.has_indicator & (
        (values == rules.indicator) | (is_nan & np.isnan(rules.indicator))
    )
    bad_nan = ~np.isfinite(values) & ~rules.nan_ok & ~is_indicator
    below = (values < rules.low) & ~is_indicator
    above = (values > rules.high) & ~is_indicator
    if not (bad_nan.any() or below.any() or above.any()):
        return []
    errors = []
    for rule, mask in (
        ("nan", bad_nan),
        ("minimum", below & ~bad_nan),
        ("maximum", above & ~bad_nan),
    ):
        for row, column in np.argwhere(mask)[:MAX_REPORTED]:
            owner = rules.owners[column]
            value = values[row, column]
            bound = rules.low[column] if rule == "minimum" else rules.high[column]
            if rule == "nan":
                message = f"{value!r} is not a finite number"
            else:
                side = "below the minimum" if rule == "minimum" else "above the maximum"
                message = f"{value:g} is {side} {bound:g}"
            errors.append(FieldError(int(row), owner, rule, message))
    return errors
