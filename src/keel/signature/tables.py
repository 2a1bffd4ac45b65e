"""Column data as it arrives (a dict of columns or a pandas DataFrame) read into 1-D numpy arrays.

pandas is never imported here: a DataFrame can only exist if the caller has
imported pandas already, so it is recognised through ``sys.modules``.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.errors import FieldError
from keel.signature.rules import UNKNOWN_FIELD_MESSAGE, kind_of

Column = npt.NDArray[Any]
"""A 1-D numpy array of one column's raw values, in whatever dtype it arrived."""


@dataclass(frozen=True)
class Table:
    """Raw columns by name, all ``rows`` long, and the problems met while reading them."""

    rows: int
    columns: dict[str, Column]
    errors: list[FieldError]


def is_dataframe(data: object) -> bool:
    """Tell whether ``data`` is a pandas DataFrame without importing pandas."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(data, pandas.DataFrame)


def read_table(data: Mapping[Any, object] | Any) -> Table:
    """Read a dict of columns or a DataFrame into raw 1-D columns of equal length."""
    if is_dataframe(data):
        return _read_dataframe(data)
    return _read_mapping(data)


def _read_dataframe(frame: Any) -> Table:
    errors: list[FieldError] = []
    columns: dict[str, Column] = {}
    labels = list(frame.columns)
    repeated = {label for label, seen in Counter(labels).items() if seen > 1}
    for position, label in enumerate(labels):
        name = str(label)
        if not isinstance(label, str):
            errors.append(_unknown(name))
        elif label in repeated:
            if labels.index(label) == position:
                message = "the column appears more than once"
                errors.append(FieldError(None, name, "not_a_record", message))
        else:
            columns[name] = series_values(frame.iloc[:, position])
    return Table(len(frame), columns, errors)


def series_values(series: Any) -> Column:
    """Return a pandas Series as a numpy array that keeps what its values mean."""
    if isinstance(series.dtype, np.dtype):
        return np.asarray(series.to_numpy())
    # Extension dtypes (Int64, boolean, string, category) go through objects so that
    # pd.NA stays a missing marker and large integers are not rounded through float64.
    return np.asarray(series.to_numpy(dtype=object))


def _read_mapping(data: Mapping[Any, object]) -> Table:
    errors: list[FieldError] = []
    columns: dict[str, Column] = {}
    rows: int | None = None
    for key, value in data.items():
        name = str(key)
        if not isinstance(key, str):
            errors.append(_unknown(name))
            continue
        column = _as_column(value)
        if column is None:
            message = (
                f"expected a column of values (a list or 1-D array), got {kind_of(value)}; "
                "to send one record, wrap it in a list"
            )
            errors.append(FieldError(None, name, "type", message))
            continue
        if rows is None:
            rows = len(column)
        elif len(column) != rows:
            message = f"column has {len(column)} values where the first column has {rows}"
            errors.append(FieldError(None, name, "not_a_record", message))
            continue
        columns[name] = column
    return Table(rows or 0, columns, errors)


def _as_column(value: object) -> Column | None:
    """Return ``value`` as a 1-D array, or None if it is not a column of values."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.Series):
        return series_values(value)
    if isinstance(value, np.ndarray):
        return value if value.ndim == 1 else None
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        return None
    return list_values(value)


def list_values(values: Sequence[object]) -> Column:
    """Return a sequence of Python values as an array, typed only where that loses nothing."""
    # np.asarray would turn [True, 2] into integers and [1, "a"] into strings, so a
    # typed array is used only when every value has exactly the same Python type.
    kinds = set(map(type, values))
    if kinds == {float}:
        return np.array(values, dtype=np.float64)
    if kinds == {bool}:
        return np.array(values, dtype=np.bool_)
    if kinds == {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    return np.fromiter(values, dtype=object, count=len(values))


def _unknown(name: str) -> FieldError:
    return FieldError(None, name, "unknown_field", UNKNOWN_FIELD_MESSAGE)
