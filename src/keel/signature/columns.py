"""Raw columns checked against their features and turned into canonical feature columns.

Columns follow pandas' conventions for a missing value: None, pd.NA, or NaN
(except in a float feature with ``allow_nan``, where NaN is a value). JSON
records are different: there, null is the only missing marker and NaN is a
number the ``nan`` rule refuses. Typed numeric arrays are checked vectorised;
columns of Python objects go value by value through ``value_checker``, the code
the request validator runs.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from keel.errors import FieldError, InvalidRequest
from keel.signature.feature import INT64_MAX, INT64_MIN, Feature
from keel.signature.rules import (
    NULL_MESSAGE,
    REQUIRED_MESSAGE,
    Rule,
    RuleViolation,
    unknown_field_message,
)
from keel.signature.tables import Column, Table
from keel.signature.values import (
    FLOAT32_MAX,
    above_message,
    below_message,
    float32_message,
    nan_message,
    value_checker,
)

if TYPE_CHECKING:
    from keel.signature.signature import Signature

# Each feature dtype's canonical array dtype; categorical columns hold level indices.
CANONICAL_DTYPES: dict[str, type[np.generic]] = {
    "float": np.float64,
    "int": np.int64,
    "bool": np.bool_,
    "categorical": np.int64,
    "string": np.object_,
}
PLACEHOLDERS: dict[str, object] = {
    "float": 0.0,
    "int": 0,
    "bool": False,
    "categorical": 0,
    "string": "",
}
# Numpy dtype kinds each feature dtype accepts without going value by value.
_NUMERIC_KINDS: dict[str, str] = {"float": "fiu", "int": "fiu", "bool": "b"}


@dataclass(frozen=True)
class FeatureColumn:
    """One checked feature column in its canonical dtype, and where its values are missing.

    ``values`` is float64, int64, bool, int64 level indices (categorical) or an
    object array of str; rows flagged in ``missing`` hold a placeholder.
    """

    values: npt.NDArray[Any]
    missing: npt.NDArray[np.bool_]


def check_table(table: Table, signature: Signature) -> dict[str, FeatureColumn]:
    """Check every column of a table; raise ``InvalidRequest`` listing every violation."""
    features = signature.features
    float32 = signature.float32_features
    errors = list(table.errors)
    known = signature.feature_names
    errors.extend(
        FieldError(None, name, "unknown_field", unknown_field_message(name, known))
        for name in table.columns
        if name not in known
    )
    checked: dict[str, FeatureColumn] = {}
    for feature in features:
        raw = table.columns.get(feature.name)
        if raw is not None:
            checked[feature.name] = check_column(feature, raw, errors, feature.name in float32)
            continue
        # An absent column is null in every row: one "required" error, not one per row.
        if table.rows and not feature.nullable:
            errors.append(FieldError(None, feature.name, "required", REQUIRED_MESSAGE))
        checked[feature.name] = _placeholder_column(feature, table.rows)
    if errors:
        raise InvalidRequest(errors)
    return checked


def check_column(
    feature: Feature, raw: Column, errors: list[FieldError], float32: bool = False
) -> FeatureColumn:
    """Check one raw column, appending what it breaks to ``errors``.

    ``float32`` says the feature goes into a float32 tensor (see ``value_checker``).
    """
    if not len(raw):
        return _placeholder_column(feature, 0)
    kind = raw.dtype.kind
    # A float column may be pandas' way of writing a column of missing values (all NaN),
    # so for bool, categorical and string features it is read value by value.
    if kind in "UT" or (kind == "f" and feature.dtype not in ("float", "int")):
        raw = raw.astype(object)
    if raw.dtype.kind == "O":
        return _object_column(feature, raw, errors, float32)
    if raw.dtype.kind not in _NUMERIC_KINDS.get(feature.dtype, ""):
        message = f"a column of dtype {raw.dtype} cannot hold {feature.dtype} values"
        errors.append(FieldError(None, feature.name, "type", message))
        return _placeholder_column(feature, len(raw))
    if feature.dtype == "float":
        return _float_column(feature, raw, errors, float32)
    if feature.dtype == "int":
        return _int_column(feature, raw, errors)
    return FeatureColumn(raw.astype(np.bool_), np.zeros(len(raw), dtype=np.bool_))


def _placeholder_column(feature: Feature, rows: int) -> FeatureColumn:
    values = np.full(rows, PLACEHOLDERS[feature.dtype], dtype=CANONICAL_DTYPES[feature.dtype])
    return FeatureColumn(values, np.ones(rows, dtype=np.bool_))


def _object_column(
    feature: Feature, raw: Column, errors: list[FieldError], float32: bool
) -> FeatureColumn:
    placeholder = PLACEHOLDERS[feature.dtype]
    clean: list[object] = [placeholder] * len(raw)
    missing = np.zeros(len(raw), dtype=np.bool_)
    is_missing = _missing_marker(feature)
    check_value = value_checker(feature, float32)
    for row, value in enumerate(raw):
        if is_missing(value):
            missing[row] = True
            if not feature.nullable:
                errors.append(FieldError(row, feature.name, "null", NULL_MESSAGE))
            continue
        try:
            clean[row] = check_value(value)
        except RuleViolation as violation:
            errors.append(FieldError(row, feature.name, violation.rule, violation.message))
    if feature.dtype == "categorical":
        codes = {level: code for code, level in enumerate(feature.levels or ())}
        clean = [codes.get(value, 0) if isinstance(value, str) else 0 for value in clean]
    values = np.empty(len(raw), dtype=object) if feature.dtype == "string" else None
    if values is None:
        return FeatureColumn(np.array(clean, dtype=CANONICAL_DTYPES[feature.dtype]), missing)
    values[:] = clean
    return FeatureColumn(values, missing)


def _missing_marker(feature: Feature) -> Callable[[object], bool]:
    """Return the test for pandas-style missing markers in this feature's column."""
    pandas = sys.modules.get("pandas")
    na = pandas.NA if pandas is not None else None
    nan_is_value = feature.dtype == "float" and feature.allow_nan

    def is_missing(value: object) -> bool:
        if value is None or (na is not None and value is na):
            return True
        if nan_is_value or not isinstance(value, float | np.floating):
            return False
        return math.isnan(value)

    return is_missing


def _float_column(
    feature: Feature, raw: Column, errors: list[FieldError], float32: bool
) -> FeatureColumn:
    numbers = raw.astype(np.float64)
    nan = np.isnan(numbers)
    infinite = np.isinf(numbers)
    if feature.allow_nan:
        missing = np.zeros(len(numbers), dtype=np.bool_)
        in_range = ~nan
    else:
        missing = nan
        _add(errors, feature, infinite, numbers, "nan", nan_message)
        in_range = ~nan & ~infinite
    if float32:
        too_large = ~infinite & (np.abs(numbers) > FLOAT32_MAX)
        _add(errors, feature, too_large & (numbers > 0), numbers, "maximum", float32_message)
        _add(errors, feature, too_large & (numbers < 0), numbers, "minimum", float32_message)
        in_range &= ~too_large
    _null_rows(errors, feature, missing)
    # Bounds are compared as floats, as value_checker compares a float feature's values.
    _bounds(errors, feature, numbers, in_range, float)
    numbers[missing] = 0.0
    return FeatureColumn(numbers, missing)


def _int_column(feature: Feature, raw: Column, errors: list[FieldError]) -> FeatureColumn:
    if raw.dtype.kind == "f":
        numbers = raw.astype(np.float64)
        missing = np.isnan(numbers)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(numbers) & (np.floor(numbers) == numbers)
            # 2**63 is exact in float64; it and everything above overflow int64.
            fits = whole & (numbers >= float(INT64_MIN)) & (numbers < float(2**63))
        bad = ~missing & ~fits
        _add(errors, feature, bad, numbers, "type", _not_an_int64)
        values = np.where(fits, numbers, 0.0).astype(np.int64)
    elif raw.dtype.kind == "u":
        missing = np.zeros(len(raw), dtype=np.bool_)
        bad = raw > np.uint64(INT64_MAX)
        _add(errors, feature, bad, raw, "type", _not_an_int64)
        values = np.where(bad, 0, raw).astype(np.int64)
    else:
        missing = np.zeros(len(raw), dtype=np.bool_)
        bad = missing
        values = raw.astype(np.int64)
    _null_rows(errors, feature, missing)
    _bounds(errors, feature, values, ~missing & ~bad, int)
    return FeatureColumn(values, missing)


def _not_an_int64(value: object) -> str:
    return f"expected an integer that fits in 64 bits, got {value!r}"


def _null_rows(errors: list[FieldError], feature: Feature, missing: npt.NDArray[np.bool_]) -> None:
    if not feature.nullable:
        _add(errors, feature, missing, missing, "null", lambda _: NULL_MESSAGE)


def _bounds(
    errors: list[FieldError],
    feature: Feature,
    numbers: npt.NDArray[Any],
    present: npt.NDArray[np.bool_],
    as_bound: Callable[[float], float],
) -> None:
    with np.errstate(invalid="ignore"):
        if feature.minimum is not None:
            low = as_bound(feature.minimum)
            below = present & (numbers < low)
            _add(errors, feature, below, numbers, "minimum", lambda v: below_message(v, low))
        if feature.maximum is not None:
            high = as_bound(feature.maximum)
            above = present & (numbers > high)
            _add(errors, feature, above, numbers, "maximum", lambda v: above_message(v, high))


def _add(
    errors: list[FieldError],
    feature: Feature,
    rows: npt.NDArray[np.bool_],
    values: npt.NDArray[Any],
    rule: Rule,
    message: Callable[[Any], str],
) -> None:
    """Record one error for every flagged row."""
    if not rows.any():
        return
    for row in np.flatnonzero(rows).tolist():
        errors.append(FieldError(row, feature.name, rule, message(values[row].item())))
