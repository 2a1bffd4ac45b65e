"""The rules one submitted value must pass for its feature, checked value by value.

JSON records are checked here (through the request validator), and so is any
column that arrives as Python objects rather than a typed numpy array; typed
numeric columns get the same rules, vectorised, in ``keel.signature.columns``.
A v2 tensor's suspect cells are judged here too, as the record values they stand
for (``keel.signature.tensors``), so both APIs name a violation alike.
A checker is built once per feature so that the per-value cost stays small on
the request path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from keel.signature.feature import INT64_MAX, INT64_MIN, Feature
from keel.signature.rules import NULL_MESSAGE, Rule, RuleViolation, kind_of, shown

FeatureValue = float | int | bool | str | None
"""A checked feature value in its canonical Python type; None only for nullable features."""

ValueChecker = Callable[[object], FeatureValue]
"""Checks one value for one feature; returns it in canonical type or raises RuleViolation."""

FLOAT32_MAX = float(np.finfo(np.float32).max)
"""The largest finite float32; a float feature bound for a float32 tensor may not exceed it."""

_BOOLS = (bool, np.bool_)
_INTEGERS = (int, np.integer)
_FLOATS = (float, np.floating)


def value_checker(feature: Feature, float32: bool = False) -> ValueChecker:
    """Return the checker of one feature's values, null handling included.

    ``float32`` says the feature goes into a float32 tensor, where a finite value
    beyond the float32 range would silently become infinity, so it is refused.
    """
    if feature.dtype == "float":
        check = _float_checker(feature, float32)
    else:
        check = _CHECKER_MAKERS[feature.dtype](feature)
    nullable = feature.nullable

    def checked(value: object) -> FeatureValue:
        if value is None:
            if nullable:
                return None
            raise RuleViolation("null", NULL_MESSAGE)
        return check(value)

    return checked


def below_message(number: object, minimum: float) -> str:
    """Explain a value below the minimum."""
    return f"{shown(number)} is below the minimum {minimum}"


def above_message(number: object, maximum: float) -> str:
    """Explain a value above the maximum."""
    return f"{shown(number)} is above the maximum {maximum}"


def nan_message(number: object) -> str:
    """Explain why NaN or an infinity was refused."""
    return f"{number} is not accepted (the feature does not declare allow_nan)"


def float32_message(number: object) -> str:
    """Explain why a finite value too large for float32 was refused."""
    return f"{shown(number)} is beyond the float32 range of the model input"


def _float_checker(feature: Feature, float32: bool) -> ValueChecker:
    # Bounds are compared as floats, the way a float64 column is compared.
    low = None if feature.minimum is None else float(feature.minimum)
    high = None if feature.maximum is None else float(feature.maximum)
    allow_nan = feature.allow_nan

    def check(value: object) -> float:
        if type(value) is float:  # JSON numbers: skip the slower isinstance chain
            number = value
        elif isinstance(value, _BOOLS) or not isinstance(value, _INTEGERS + _FLOATS):
            raise RuleViolation("type", f"expected a number, got {kind_of(value)}")
        else:
            try:
                number = float(value)
            except OverflowError:
                raise RuleViolation("type", f"{shown(value)} is too large for a float") from None
        if not math.isfinite(number):
            if not allow_nan:
                raise RuleViolation("nan", nan_message(number))
            if math.isnan(number):
                # NaN has no place on the number line, so the bounds cannot refuse it.
                return number
        elif float32 and abs(number) > FLOAT32_MAX:
            rule: Rule = "maximum" if number > 0 else "minimum"
            raise RuleViolation(rule, float32_message(number))
        _check_range(number, low, high)
        return number

    return check


def _int_checker(feature: Feature) -> ValueChecker:
    low, high = feature.minimum, feature.maximum

    def check(value: object) -> int:
        if type(value) is int:
            number = value
        elif isinstance(value, _BOOLS):
            raise RuleViolation("type", "expected an integer, got bool")
        elif isinstance(value, _INTEGERS):
            number = int(value)
        elif isinstance(value, _FLOATS):
            # An integral float is an integer: pandas stores int columns with gaps as float64.
            if not math.isfinite(value) or not float(value).is_integer():
                raise RuleViolation("type", f"expected an integer, got {shown(value)}")
            number = int(value)
        else:
            raise RuleViolation("type", f"expected an integer, got {kind_of(value)}")
        if not INT64_MIN <= number <= INT64_MAX:
            raise RuleViolation("type", f"{shown(number)} does not fit in a 64-bit integer")
        _check_range(number, low, high)
        return number

    return check


def _check_range(number: float, low: float | None, high: float | None) -> None:
    if low is not None and number < low:
        raise RuleViolation("minimum", below_message(number, low))
    if high is not None and number > high:
        raise RuleViolation("maximum", above_message(number, high))


def _bool_checker(feature: Feature) -> ValueChecker:
    def check(value: object) -> bool:
        if not isinstance(value, _BOOLS):
            raise RuleViolation("type", f"expected true or false, got {kind_of(value)}")
        return bool(value)

    return check


def listed_levels(levels: Sequence[str]) -> str:
    """The levels as an error message lists them: the first ten, then how many more."""
    listed = ", ".join(repr(level) for level in levels[:10])
    if len(levels) > 10:
        listed += f" and {len(levels) - 10} more"
    return listed


def _categorical_checker(feature: Feature) -> ValueChecker:
    levels = feature.levels or ()
    known = frozenset(levels)
    listed = listed_levels(levels)

    def check(value: object) -> str:
        if not isinstance(value, str):
            raise RuleViolation("type", f"expected a level (a string), got {kind_of(value)}")
        if value not in known:
            raise RuleViolation("level", f"{shown(value)} is not one of the levels {listed}")
        return str(value)

    return check


def _string_checker(feature: Feature) -> ValueChecker:
    def check(value: object) -> str:
        if not isinstance(value, str):
            raise RuleViolation("type", f"expected a string, got {kind_of(value)}")
        return str(value)

    return check


_CHECKER_MAKERS: dict[str, Callable[[Feature], ValueChecker]] = {
    "int": _int_checker,
    "bool": _bool_checker,
    "categorical": _categorical_checker,
    "string": _string_checker,
}
