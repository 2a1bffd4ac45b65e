"""The signature's rules on ready-made input tensors: a bulk check, and one that names violations.

Records are checked value by value; Open Inference Protocol (v2) clients send
the model's input tensors themselves. Each column of such a tensor belongs to
a feature (``Signature.inputs`` says which), so every rule the feature
declares holds on its columns as it does on a record's field:

* float and int features: the bounds, NaN and infinity (``allow_nan``); an
  int feature in a float tensor must hold a whole number that fits 64 bits;
* bool features in a numeric tensor: 0 or 1;
* categorical features: one-hot columns hold 0 or 1 with exactly one 1 per
  row; an index code is a whole number from 0 to the number of levels less
  one; in a string tensor, one of the levels;
* string features in a string tensor: a string.

A tensor cannot hold null: a nullable feature's missing value is its
``missing_indicator`` (as the tensor's dtype holds it, which is what
``to_arrays`` writes for null), accepted even outside the bounds.

``holds`` answers "is all of it valid?" with a few numpy operations prepared
once per signature; it may say no to a valid tensor (an indicator outside the
bounds, an allowed NaN), never yes to an invalid one. Only then does
``violations`` look again: it finds the suspect rows with numpy and turns each
suspect cell back into the value a record would hold, judged by the records'
own checker (``value_checker``), so both APIs refuse with the same rule and
message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from keel.errors import FieldError
from keel.signature.arrays import feature_width
from keel.signature.fast_records import FLOAT64_MAX, picker
from keel.signature.feature import INT64_MAX, INT64_MIN, Feature
from keel.signature.model_input import ModelInput
from keel.signature.rules import RuleViolation, shown
from keel.signature.values import FLOAT32_MAX, listed_levels, value_checker

if TYPE_CHECKING:
    from keel.signature.signature import Signature

MAX_REPORTED = 20
"""The most violations one check reports (the first, by row then feature)."""

CellJudge = Callable[[list[Any]], None]
"""Judges the cells of one row that hold one feature; raises RuleViolation if they break a rule."""

_STR = frozenset({str})


@dataclass(frozen=True)
class FeatureBlock:
    """The columns one feature fills in a tensor, and how a row of them is judged."""

    feature: Feature
    start: int
    width: int
    judge: CellJudge

    @property
    def where(self) -> str:
        """The columns, as a message names them."""
        if self.width == 1:
            return f"column {self.start}"
        return f"columns {self.start}-{self.start + self.width - 1}"


@dataclass(frozen=True)
class NumericRules:
    """Every rule of the features in one numeric input tensor, one entry per column."""

    name: str
    blocks: tuple[FeatureBlock, ...]
    # Each column's bounds made finite and rounded inward, so that a value between
    # them is valid whatever else is declared: in float64, in float32 (compared
    # without converting a float32 request first) and as integers (exact for int64).
    low: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low_float32: npt.NDArray[np.float32]
    high_float32: npt.NDArray[np.float32]
    low_int: npt.NDArray[np.int64]
    high_int: npt.NDArray[np.int64]
    # Columns that must hold whole numbers (int, bool, categorical), where a float can fail it.
    whole: npt.NDArray[np.intp] | None
    # [width, groups]: each one-hot feature's columns, which must sum to exactly 1 per row.
    one_hot_float: npt.NDArray[np.float32] | None
    one_hot_int: npt.NDArray[np.int64] | None
    # What the slow path forgives: NaN where allowed, and a nullable feature's indicator.
    nan_ok: npt.NDArray[np.bool_]
    indicators: tuple[bool | int | float | str | None, ...]
    # How many columns the tensor has, and whether any has a rule beyond its bounds
    # (plain fields: read on every request, where a property costs a call).
    width: int
    encoded: bool
    # The same encoding rules for a row as a Python sequence: the whole-number cells
    # of a row, and each one-hot feature's [start, stop) in it.
    whole_of: Callable[[Sequence[Any]], tuple[Any, ...]] | None
    one_hot_spans: tuple[tuple[int, int], ...]

    def holds(self, array: npt.NDArray[Any]) -> bool:
        """Whether every value is valid, judged in bulk; False only means: look closer."""
        # _table inlined: this runs on every v2 request.
        values = array if array.ndim == 2 else array.reshape(array.shape[0], -1)
        if values.shape[1] != self.width:
            return False
        low: npt.NDArray[Any]
        high: npt.NDArray[Any]
        dtype = values.dtype
        if dtype == np.float32:
            low, high = self.low_float32, self.high_float32
        elif dtype.kind == "f":
            low, high = self.low, self.high
        else:
            integers = _numbers(values)
            if integers is None:
                return False
            values, low, high = integers, self.low_int, self.high_int
        # The bounds are finite: NaN and the infinities fail them.
        if not np.logical_and.reduce((values >= low) & (values <= high), axis=None):
            return False
        return not self.encoded or self.encoding_holds(values)

    def encoding_holds(self, array: npt.NDArray[Any]) -> bool:
        """Whether whole-number columns hold whole numbers and one-hot rows one 1.

        Valid only for values already within the bounds (finite; one-hot cells in [0, 1]).
        """
        values = _table(array)
        if self.whole is not None and values.dtype.kind == "f":
            picked = values[:, self.whole]
            if not (np.trunc(picked) == picked).all():
                return False
        matrix = self.one_hot_float if values.dtype.kind == "f" else self.one_hot_int
        # Cells are 0 or 1 here, so a sum of exactly 1 is exactly one level set.
        return matrix is None or bool(((values @ matrix) == 1).all())

    def listed_encoding_holds(self, values: Sequence[Any], rows: int) -> bool:
        """``encoding_holds`` for a few rows of row-major Python numbers within the bounds.

        For a handful of rows this is cheaper than any numpy call. Judging a JSON number
        before its cast to float32 is safe: a whole number stays whole, 0 and 1 stay
        themselves (a value the cast would make whole is left to the bulk check).
        """
        width = self.width
        for offset in range(0, rows * width, width):
            row = values if rows == 1 else values[offset : offset + width]
            if self.whole_of is not None and not all(
                map(float.is_integer, map(float, self.whole_of(row)))
            ):
                return False
            for start, stop in self.one_hot_spans:
                # Whole and within [0, 1]: a sum of 1 is exactly one level set.
                if sum(row[start:stop]) != 1:
                    return False
        return True

    def violations(self, array: npt.NDArray[Any], limit: int = MAX_REPORTED) -> list[FieldError]:
        """The first ``limit`` violations, naming tensor, row, feature, columns and rule."""
        table = _table(array)
        if table.shape[1] != self.width:
            return [_width_error(self.name, table.shape[1], self.width)]
        values = _numbers(table)
        if values is None:
            message = f"input '{self.name}' must hold numbers, got {table.dtype}"
            return [FieldError(None, self.name, "type", message)]
        ok = self._cells_ok(values)
        sums = None
        if self.one_hot_int is not None:
            with np.errstate(invalid="ignore"):
                sums = values.astype(np.float64) @ self.one_hot_int.astype(np.float64)
        suspects: list[Iterable[int]] = []
        group = 0
        for block in self.blocks:
            bad = ~ok[:, block.start : block.start + block.width].all(axis=1)
            if _is_one_hot(block) and sums is not None:
                bad |= sums[:, group] != 1
                group += 1
            suspects.append(np.flatnonzero(bad).tolist())
        return _judged(self.name, self.blocks, suspects, values, limit)

    def _cells_ok(self, values: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
        """Which cells are certainly valid; the others are judged one by one."""
        with np.errstate(invalid="ignore", over="ignore"):
            if values.dtype.kind != "f":
                ok: npt.NDArray[np.bool_] = (values >= self.low_int) & (values <= self.high_int)
                indicators, present = _indicator_row(self, values.dtype)
                ok |= present & (values == indicators)
                return ok
            ok = (values >= self.low) & (values <= self.high)
            if self.whole is not None:
                picked = values[:, self.whole]
                ok[:, self.whole] &= np.trunc(picked) == picked
            nan = np.isnan(values)
            indicators, present = _indicator_row(self, values.dtype)
            same = (values == indicators) | (nan & np.isnan(indicators))
            forgiven: npt.NDArray[np.bool_] = (nan & self.nan_ok) | (present & same)
            return ok | forgiven


@dataclass(frozen=True)
class StringRules:
    """The rules of the features in one string input tensor: strings, and levels."""

    name: str
    blocks: tuple[FeatureBlock, ...]
    # (column, levels) of every categorical feature.
    levels: tuple[tuple[int, frozenset[str]], ...]

    @property
    def width(self) -> int:
        """How many columns the tensor has."""
        return len(self.blocks)

    def holds(self, array: npt.NDArray[Any]) -> bool:
        """Whether every value is a string, and each categorical one of its levels."""
        values = _table(array)
        if values.shape[1] != self.width or values.dtype.kind not in "OU":
            return False
        if values.dtype.kind == "O" and not _STR.issuperset(map(type, values.ravel().tolist())):
            return False
        return all(known.issuperset(values[:, column].tolist()) for column, known in self.levels)

    def violations(self, array: npt.NDArray[Any], limit: int = MAX_REPORTED) -> list[FieldError]:
        """The first ``limit`` violations, naming tensor, row, feature, column and rule."""
        values = _table(array)
        if values.shape[1] != self.width:
            return [_width_error(self.name, values.shape[1], self.width)]
        every_row = range(values.shape[0])
        return _judged(self.name, self.blocks, [every_row] * len(self.blocks), values, limit)


TensorRules = NumericRules | StringRules
"""The rules of one input tensor."""


def tensor_rules(signature: Signature) -> Mapping[str, TensorRules]:
    """The rules of every input tensor of ``signature``, by name, built once per signature."""
    cache = signature.compiled_cache
    rules = cache.get("tensor_rules")
    if not isinstance(rules, Mapping):
        features = {f.name: f for f in signature.features}
        float32 = signature.float32_features
        rules = cache["tensor_rules"] = MappingProxyType(
            {t.name: _rules_of(t, features, float32) for t in signature.inputs}
        )
    return rules


def _rules_of(
    tensor: ModelInput, features: Mapping[str, Feature], float32: frozenset[str]
) -> TensorRules:
    members = [features[name] for name in tensor.features]
    dtype = np.dtype(np.object_ if tensor.dtype == "string" else tensor.dtype)
    blocks = []
    start = 0
    for feature in members:
        width = feature_width(feature, tensor.dtype)
        judge = _judge(feature, dtype, feature.name in float32)
        blocks.append(FeatureBlock(feature, start, width, judge))
        start += width
    if tensor.dtype == "string":
        levels = tuple(
            (b.start, frozenset(b.feature.levels or ()))
            for b in blocks
            if b.feature.dtype == "categorical"
        )
        return StringRules(tensor.name, tuple(blocks), levels)
    return _numeric_rules(tensor.name, tuple(blocks), dtype)


def _numeric_rules(
    name: str, blocks: tuple[FeatureBlock, ...], dtype: np.dtype[Any]
) -> NumericRules:
    columns = [_column(block.feature) for block in blocks for _ in range(block.width)]
    low = np.array([c[0] for c in columns], dtype=np.float64)
    high = np.array([c[1] for c in columns], dtype=np.float64)
    whole = [i for i, c in enumerate(columns) if c[4]]
    one_hot = [b for b in blocks if _is_one_hot(b)]
    matrix = np.zeros((len(columns), len(one_hot)), dtype=np.int64)
    for group, block in enumerate(one_hot):
        matrix[block.start : block.start + block.width, group] = 1
    indicators = tuple(
        block.feature.missing_indicator if _has_indicator(block.feature) else None
        for block in blocks
        for _ in range(block.width)
    )
    return NumericRules(
        name=name,
        blocks=blocks,
        low=np.maximum(low, -FLOAT64_MAX),
        high=np.minimum(high, FLOAT64_MAX),
        low_float32=_float32_inward(low, upward=True),
        high_float32=_float32_inward(high, upward=False),
        low_int=np.array([c[2] for c in columns], dtype=np.int64),
        high_int=np.array([c[3] for c in columns], dtype=np.int64),
        whole=np.array(whole, dtype=np.intp) if whole and dtype.kind == "f" else None,
        one_hot_float=matrix.astype(np.float32) if one_hot else None,
        one_hot_int=matrix if one_hot else None,
        nan_ok=np.array([b.feature.allow_nan for b in blocks for _ in range(b.width)], dtype=bool),
        indicators=indicators,
        width=len(columns),
        encoded=bool(whole and dtype.kind == "f") or bool(one_hot),
        whole_of=picker(whole) if whole and dtype.kind == "f" else None,
        one_hot_spans=tuple((b.start, b.start + b.width) for b in one_hot),
    )


def _column(feature: Feature) -> tuple[float, float, int, int, bool]:
    """(low, high) as floats rounded inward, as integers, and whether values must be whole."""
    if feature.dtype == "float":
        low = -math.inf if feature.minimum is None else float(feature.minimum)
        high = math.inf if feature.maximum is None else float(feature.maximum)
        return low, high, INT64_MIN, INT64_MAX, False
    if feature.dtype == "int":
        # int bounds are ints (Feature checks it); a value must fit 64 bits as in records.
        first = INT64_MIN if feature.minimum is None else max(int(feature.minimum), INT64_MIN)
        last = INT64_MAX if feature.maximum is None else min(int(feature.maximum), INT64_MAX)
        return _float_at_or_above(first), _float_at_or_below(last), first, last, True
    if feature.dtype == "categorical" and feature.encoding == "index":
        last = len(feature.levels or ()) - 1
        return 0.0, float(last), 0, last, True
    # bool, and one-hot columns
    return 0.0, 1.0, 0, 1, True


def _float_at_or_above(number: int) -> float:
    """The smallest float at or above an integer (Python compares the two exactly)."""
    rounded = float(number)
    return rounded if rounded >= number else math.nextafter(rounded, math.inf)


def _float_at_or_below(number: int) -> float:
    """The largest float at or below an integer."""
    rounded = float(number)
    return rounded if rounded <= number else math.nextafter(rounded, -math.inf)


def _float32_inward(bounds: npt.NDArray[np.float64], upward: bool) -> npt.NDArray[np.float32]:
    """float64 bounds as the nearest finite float32 values on their inner side.

    A float32 value is >= a low bound exactly when it is >= the smallest float32 at
    or above it (and the mirror for a high bound), so the comparison stays exact;
    an infinite bound becomes float32's largest finite value, so infinity fails.
    """
    clipped = np.clip(bounds, -FLOAT32_MAX, FLOAT32_MAX)
    rounded = clipped.astype(np.float32)
    toward = np.float32(np.inf if upward else -np.inf)
    off = rounded < clipped if upward else rounded > clipped
    inward: npt.NDArray[np.float32] = np.where(off, np.nextafter(rounded, toward), rounded).astype(
        np.float32
    )
    return inward


def _is_one_hot(block: FeatureBlock) -> bool:
    return block.feature.dtype == "categorical" and block.feature.encoding == "onehot"


def _has_indicator(feature: Feature) -> bool:
    # A bool, categorical or string indicator is a valid value of its feature anyway.
    return feature.missing == "indicator" and feature.dtype in ("float", "int")


def _table(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return array if array.ndim == 2 else array.reshape(array.shape[0], -1)


def _numbers(values: npt.NDArray[Any]) -> npt.NDArray[Any] | None:
    """Numeric values to compare with the bounds: floats as they are, integers as int64.

    None for a table of what is not numbers (its width is checked before).
    """
    kind = values.dtype.kind
    if kind == "f" or values.dtype == np.int64:
        return values
    if kind == "u" and values.dtype.itemsize == 8 and values.size and values.max() > INT64_MAX:
        return None
    if kind in "iub":
        return values.astype(np.int64)
    return None


def _indicator_row(
    rules: NumericRules, dtype: np.dtype[Any]
) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """Each column's indicator as ``dtype`` holds it, and which columns have one it can hold."""
    held = [None if i is None else _held_as(i, dtype) for i in rules.indicators]
    present = np.array([h is not None for h in held], dtype=bool)
    return np.array([0 if h is None else h for h in held], dtype=dtype), present


def _held_as(indicator: object, dtype: np.dtype[Any]) -> Any:
    """The indicator as a tensor of ``dtype`` holds it, or None if it cannot hold it."""
    try:
        with np.errstate(over="ignore"):
            return np.array(indicator, dtype=dtype).item()
    except OverflowError:
        return None


def _judged(
    name: str,
    blocks: tuple[FeatureBlock, ...],
    suspects: list[Iterable[int]],
    values: npt.NDArray[Any],
    limit: int,
) -> list[FieldError]:
    """Judge the suspect rows of each block; the first ``limit`` errors by row, then feature."""
    found: list[tuple[int, int, FieldError]] = []
    for position, (block, rows) in enumerate(zip(blocks, suspects, strict=True)):
        reported = 0
        for row in rows:
            cells = values[row, block.start : block.start + block.width].tolist()
            try:
                block.judge(cells)
            except RuleViolation as violation:
                message = f"input '{name}' {block.where}: {violation.message}"
                found.append(
                    (row, position, FieldError(row, block.feature.name, violation.rule, message))
                )
                reported += 1
                if reported == limit:
                    break
    found.sort(key=lambda item: (item[0], item[1]))
    return [error for _, _, error in found[:limit]]


def _width_error(name: str, got: int, width: int) -> FieldError:
    message = f"input '{name}' has {got} columns but its features fill {width}"
    return FieldError(None, name, "type", message)


def _judge(feature: Feature, dtype: np.dtype[Any], float32: bool) -> CellJudge:
    """How a row's cells of ``feature`` in a tensor of ``dtype`` are judged."""
    if dtype.kind == "O":
        return _single(value_checker(feature))
    if feature.dtype in ("float", "int"):
        return _number_judge(feature, dtype, float32)
    if feature.dtype == "bool":
        return _single(_zero_or_one)
    if feature.encoding == "index":
        return _single(_code_checker(feature.levels or ()))
    return _one_hot_judge(feature.levels or ())


def _single(check: Callable[[Any], object]) -> CellJudge:
    def judge(cells: list[Any]) -> None:
        check(cells[0])

    return judge


def _number_judge(feature: Feature, dtype: np.dtype[Any], float32: bool) -> CellJudge:
    check = value_checker(feature, float32)
    indicator = _held_as(feature.missing_indicator, dtype) if _has_indicator(feature) else None
    nan_indicator = isinstance(indicator, float) and math.isnan(indicator)

    def judge(cells: list[Any]) -> None:
        (value,) = cells
        if indicator is not None and (
            value == indicator or (nan_indicator and isinstance(value, float) and math.isnan(value))
        ):
            return  # the tensor's way of saying "missing"
        check(value)

    return judge


def _zero_or_one(value: object) -> None:
    # NaN equals neither; True and False equal 1 and 0.
    if value != 0 and value != 1:
        raise RuleViolation("type", f"expected 0 or 1 (false or true), got {shown(value)}")


def _code_checker(levels: tuple[str, ...] | Any) -> Callable[[Any], None]:
    last = len(levels) - 1
    listed = listed_levels(levels)

    def check(code: Any) -> None:
        if not (isinstance(code, int) or (math.isfinite(code) and float(code).is_integer())):
            raise RuleViolation(
                "type", f"expected the code of a level (0 to {last}), got {shown(code)}"
            )
        if not 0 <= code <= last:
            raise RuleViolation(
                "level", f"{shown(code)} is not the code of a level (0 to {last}: {listed})"
            )

    return check


def _one_hot_judge(levels: tuple[str, ...] | Any) -> CellJudge:
    listed = listed_levels(levels)

    def judge(cells: list[Any]) -> None:
        for level, value in zip(levels, cells, strict=True):
            if value != 0 and value != 1:
                raise RuleViolation(
                    "type",
                    f"the one-hot column of level {level!r} holds {shown(value)}; "
                    "one-hot columns hold 0 or 1",
                )
        chosen = [level for level, value in zip(levels, cells, strict=True) if value == 1]
        if not chosen:
            raise RuleViolation(
                "level", f"no level is set (exactly one one-hot column must be 1: {listed})"
            )
        if len(chosen) > 1:
            both = ", ".join(repr(level) for level in chosen)
            raise RuleViolation(
                "level",
                f"{len(chosen)} levels are set ({both}); exactly one one-hot column must be 1",
            )

    return judge
