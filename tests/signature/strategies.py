"""Hypothesis strategies for signatures, records and tensors for them, and values they refuse."""

from __future__ import annotations

import math
import string
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from keel.signature import Feature, ModelInput, Output, Signature, TensorDtype

# pandas stores an int column with gaps as float64, so generated integers stay where
# float64 is exact; beyond 2**53 a DataFrame would already have changed the value.
EXACT = 2**52
FLOAT32_SAFE = 3e38

_NAME_TAIL = st.text(alphabet=string.ascii_letters + string.digits + "_.-", max_size=6)
_LEVEL = st.text(min_size=1, max_size=8)


@st.composite
def features(
    draw: st.DrawFn,
    position: int,
    dtypes: tuple[str, ...] = ("float", "int", "bool", "categorical", "string"),
) -> Feature:
    """Draw one feature of one of ``dtypes``, with bounds, nullability and levels as they fit."""
    name = f"f{position}{draw(_NAME_TAIL)}"
    dtype = draw(st.sampled_from(dtypes))
    spec: dict[str, Any] = {"name": name, "dtype": dtype}
    nullable = draw(st.booleans())
    if dtype == "float":
        spec["allow_nan"] = draw(st.booleans())
        # -0.0 as a bound would make hypothesis see [0.0, -0.0] as an empty interval.
        spec.update(draw(_bounds(st.floats(-1e6, 1e6).map(lambda v: v or 0.0))))
        indicator: object = math.nan if spec["allow_nan"] else draw(st.floats(-1e9, 1e9))
    elif dtype == "int":
        spec.update(draw(_bounds(st.integers(-EXACT, EXACT))))
        indicator = draw(st.integers(-(2**40), 2**40))
    elif dtype == "bool":
        indicator = draw(st.booleans())
    elif dtype == "categorical":
        levels = draw(st.lists(_LEVEL, min_size=1, max_size=5, unique=True))
        spec["levels"] = levels
        spec["encoding"] = draw(st.sampled_from(["onehot", "index"]))
        indicator = draw(st.sampled_from(levels))
    else:
        indicator = draw(st.text(max_size=5))
    if nullable:
        spec.update(nullable=True, missing="indicator", missing_indicator=indicator)
    return Feature(**spec)


def _bounds(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def arrange(pair: list[Any]) -> dict[str, Any]:
        low, high = sorted(pair)
        return {"minimum": low, "maximum": high}

    both = st.lists(numbers, min_size=2, max_size=2).map(arrange)
    return st.one_of(
        st.just({}),
        both,
        numbers.map(lambda low: {"minimum": low}),
        numbers.map(lambda high: {"maximum": high}),
    )


@st.composite
def signatures(draw: st.DrawFn) -> Signature:
    """Draw a signature of mixed features spread over float, int64 and string tensors."""
    count = draw(st.integers(1, 6))
    drawn = [draw(features(position)) for position in range(count)]
    numeric_dtype: TensorDtype = draw(st.sampled_from(["float32", "float64"]))
    homes: dict[str, list[str]] = {"x": [], "k": [], "s": []}
    for feature in drawn:
        choices = {
            "float": ["x"],
            "int": ["x", "k"],
            "bool": ["x", "k"],
            "categorical": ["x", "k", "s"],
            "string": ["s"],
        }[feature.dtype]
        homes[draw(st.sampled_from(choices))].append(feature.name)
    dtypes: dict[str, TensorDtype] = {"x": numeric_dtype, "k": "int64", "s": "string"}
    inputs = [
        ModelInput(name=name, dtype=dtypes[name], features=names)
        for name, names in homes.items()
        if names
    ]
    output = Output(name="score", dtype="float32", shape=[None, 1], kind="score")
    return Signature(features=drawn, outputs=[output], inputs=inputs)


def valid_values(feature: Feature) -> st.SearchStrategy[Any]:
    """Values the feature accepts in every path (records, columns, DataFrames)."""
    if feature.dtype == "float":
        # Finite values beyond float32 are refused for float32 tensors, so stay inside.
        low = -FLOAT32_SAFE if feature.minimum is None else feature.minimum
        high = FLOAT32_SAFE if feature.maximum is None else feature.maximum
        options = [st.floats(low, high, allow_nan=False)]
        first, last = max(-EXACT, math.ceil(low)), min(EXACT, math.floor(high))
        if first <= last:
            # JSON clients send 3 for 3.0; records and columns must agree on it too.
            options.append(st.integers(first, last))
        if feature.allow_nan:
            options.append(st.just(math.nan))
            if feature.maximum is None:
                options.append(st.just(math.inf))
            if feature.minimum is None:
                options.append(st.just(-math.inf))
        return st.one_of(*options)
    if feature.dtype == "int":
        low = -EXACT if feature.minimum is None else feature.minimum
        high = EXACT if feature.maximum is None else feature.maximum
        return st.integers(int(low), int(high))
    if feature.dtype == "bool":
        return st.booleans()
    if feature.dtype == "categorical":
        return st.sampled_from(feature.levels or ())
    return st.text(max_size=10)


_ABSENT = object()


@st.composite
def valid_records(draw: st.DrawFn, signature: Signature) -> list[dict[str, Any]]:
    """Draw records a signature accepts; nullable features may be null or absent."""
    records = []
    for _ in range(draw(st.integers(0, 8))):
        record: dict[str, Any] = {}
        for feature in signature.features:
            value = draw(valid_values(feature))
            if feature.nullable:
                value = draw(st.sampled_from([value, None, _ABSENT]))
            if value is not _ABSENT:
                record[feature.name] = value
        records.append(record)
    return records


def invalid_values(feature: Feature) -> st.SearchStrategy[Any]:
    """Values the feature refuses in every path (so never NaN, a missing marker in columns)."""
    junk = st.one_of(st.text(max_size=5), st.lists(st.integers(), max_size=2))
    options: list[st.SearchStrategy[Any]] = []
    # pandas turns None into NaN in a float column, and NaN is a value where allow_nan
    # is declared, so there null is refused only in records (tested separately).
    if not feature.nullable and not feature.allow_nan:
        options.append(st.none())
    if feature.dtype in ("float", "int"):
        options += [junk, st.booleans()]
        options += _out_of_range(feature)
    if feature.dtype == "float" and not feature.allow_nan:
        options.append(st.sampled_from([math.inf, -math.inf]))
    if feature.dtype == "int":
        fractional = st.floats(-1e6, 1e6).filter(lambda v: not v.is_integer())
        options += [fractional, st.integers(2**63, 2**70)]
    if feature.dtype == "bool":
        options += [st.integers(-5, 5), st.floats(-5, 5), st.text(max_size=5)]
    if feature.dtype == "categorical":
        levels = feature.levels or ()
        options += [_LEVEL.filter(lambda v: v not in levels), st.integers(), st.booleans()]
    if feature.dtype == "string":
        options += [st.integers(), st.floats(allow_nan=False), st.booleans()]
    return st.one_of(*options)


def _out_of_range(feature: Feature) -> list[st.SearchStrategy[Any]]:
    options: list[st.SearchStrategy[Any]] = []
    if feature.dtype == "int":
        if feature.maximum is not None:
            high = int(feature.maximum)
            options.append(st.integers(high + 1, high + 1000))
        if feature.minimum is not None:
            low = int(feature.minimum)
            options.append(st.integers(low - 1000, low - 1))
        return options
    if feature.maximum is not None:
        options.append(st.floats(min_value=feature.maximum, max_value=1e12, exclude_min=True))
    if feature.minimum is not None:
        options.append(st.floats(min_value=-1e12, max_value=feature.minimum, exclude_max=True))
    return options


@st.composite
def float_signatures(draw: st.DrawFn) -> Signature:
    """Draw a signature of float features only, over one or two float tensors."""
    drawn = [draw(features(position, ("float",))) for position in range(draw(st.integers(1, 6)))]
    split = draw(st.integers(0, len(drawn) - 1))
    groups = [drawn[:split], drawn[split:]] if split else [drawn]
    inputs = [
        ModelInput(
            name=f"x{i}",
            dtype=draw(st.sampled_from(["float32", "float64"])),
            features=[f.name for f in group],
        )
        for i, group in enumerate(groups)
    ]
    output = Output(name="score", dtype="float32", shape=[None, 1], kind="score")
    return Signature(features=drawn, outputs=[output], inputs=inputs)


# --- tensors, as v2 clients send them, and the records they stand for ---

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _numbers_for(feature: Feature, dtype: str) -> st.SearchStrategy[Any]:
    """Cells of one numeric column: valid values, their edges, and what clients get wrong."""
    integers = dtype in ("int64", "int32")
    edges: list[Any] = [0, 1, -1, 2]
    if feature.minimum is not None:
        edges += [feature.minimum, feature.minimum - 1, math.nextafter(feature.minimum, -math.inf)]
    if feature.maximum is not None:
        edges += [feature.maximum, feature.maximum + 1, math.nextafter(feature.maximum, math.inf)]
    for bound in (feature.minimum, feature.maximum):
        if bound is not None and abs(bound) < 3e38:
            # The float32 values around a bound: a float32 tensor cannot hold most bounds.
            near = np.float32(bound)
            edges += [float(np.nextafter(near, np.float32(side))) for side in (-np.inf, np.inf)]
            edges.append(float(near))
    if feature.missing_indicator is not None and feature.dtype in ("float", "int"):
        edges.append(feature.missing_indicator)
    if feature.dtype == "categorical":
        edges += list(range(len(feature.levels or ())))
    options = [st.integers(-(2**40), 2**40), st.integers(-EXACT, EXACT)]
    if integers:
        edges = [int(e) for e in edges if isinstance(e, int) or float(e).is_integer()]
        edges = [e for e in edges if INT64_MIN <= e <= INT64_MAX]
        options.append(st.sampled_from([INT64_MIN, INT64_MAX]))
    else:
        edges += [0.5, -0.0, 59.5, math.nan, math.inf, -math.inf, 2.0**63, -(2.0**63)]
        options.append(st.floats(width=32 if dtype == "float32" else 64))
        if feature.dtype != "float":
            # Within the bounds but not a whole number: only integer-ness can refuse it,
            # so it is drawn as often as everything else together.
            low, high = _whole_range(feature)
            return st.one_of(_fractions(low, high), st.one_of(st.sampled_from(edges), *options))
    return st.one_of(st.sampled_from(edges), *options)


def misencoded(feature: Feature, dtype: str) -> st.SearchStrategy[list[Any]]:
    """Cells within a feature's bounds that only integer-ness or the one-hot rule refuse.

    Valid cells for a feature that has no such rule in a tensor of ``dtype``.
    """
    one_hot = feature.dtype == "categorical" and feature.encoding == "onehot"
    if dtype == "string" or not (one_hot or feature.dtype in ("int", "bool", "categorical")):
        return _valid_cells(feature, dtype)
    if one_hot:
        width = len(feature.levels or ())
        ones = st.lists(st.sampled_from([0, 1]), min_size=width, max_size=width)
        return ones.filter(lambda cells: sum(cells) != 1)
    if dtype in ("int64", "int32"):
        return _valid_cells(feature, dtype)
    fractions = _fractions(*_whole_range(feature))
    if fractions.is_empty:
        return _valid_cells(feature, dtype)
    return fractions.map(lambda value: [value])


def _fractions(low: float, high: float) -> st.SearchStrategy[float]:
    """Numbers between two whole numbers within [low, high], none of them whole (maybe none)."""
    first, last = math.ceil(low), math.floor(high) - 1
    if first > last:
        return st.nothing()
    return st.integers(first, last).flatmap(
        lambda whole: st.floats(whole, whole + 1, exclude_min=True, exclude_max=True)
    )


def _whole_range(feature: Feature) -> tuple[float, float]:
    """The bounds of a feature whose cells hold whole numbers (int, bool, categorical code)."""
    if feature.dtype == "int":
        low = -(2.0**40) if feature.minimum is None else float(feature.minimum)
        high = 2.0**40 if feature.maximum is None else float(feature.maximum)
        return low, high
    if feature.dtype == "categorical":
        return 0.0, float(len(feature.levels or ()) - 1)
    return 0.0, 1.0


def _valid_cells(feature: Feature, dtype: str, nulls: bool = True) -> st.SearchStrategy[list[Any]]:
    """The cells ``to_arrays`` writes for a valid value (or null) of one feature."""
    values = valid_values(feature)
    if feature.nullable and nulls:
        # Now and then: an indicator leaves the bulk check (and the fast path) undecided.
        values = st.one_of(values, values, values, st.none())

    def encoded(value: Any) -> list[Any]:
        if value is None:
            value = feature.missing_indicator
        if dtype == "string" or feature.dtype in ("float", "int"):
            return [value]
        if feature.dtype == "bool":
            return [int(value)]
        levels = list(feature.levels or ())
        if feature.encoding == "index":
            return [levels.index(value)]
        return [int(level == value) for level in levels]

    return values.map(encoded)


def _cells_for(feature: Feature, dtype: str) -> st.SearchStrategy[list[Any]]:
    """The cells one feature fills in one row of a tensor of ``dtype``: anything plausible."""
    if dtype == "string":
        levels = list(feature.levels or ())
        return st.one_of(st.sampled_from(levels or [""]), st.text(max_size=4)).map(lambda v: [v])
    if feature.dtype == "categorical" and feature.encoding == "onehot":
        width = len(feature.levels or ())
        numbers = [0, 1, 2, -1] if dtype in ("int64", "int32") else [0, 1, 0.5, math.nan]
        return st.one_of(
            st.just([0] * width),
            st.just([1] * width),
            st.lists(st.sampled_from([0, 1]), min_size=width, max_size=width),
            st.lists(st.sampled_from(numbers), min_size=width, max_size=width),
        )
    return _numbers_for(feature, dtype).map(lambda v: [v])


@st.composite
def tensors(
    draw: st.DrawFn,
    signature: Signature,
    max_rows: int = 4,
    breaks: Callable[[Feature, str], st.SearchStrategy[list[Any]]] | None = None,
    nulls: bool = True,
) -> dict[str, np.ndarray]:
    """A signature's input tensors, valid or valid but for a cell or two (so each rule decides).

    ``breaks`` draws the cells that replace a feature's valid ones (by default anything
    plausible, ``misencoded`` for what only integer-ness and one-hot rules refuse).
    Numbers are cast to the tensor's dtype as a client's cast would (59.5 stays 59.5 in
    float32; 1e39 becomes infinity). Without ``nulls``, no valid cell is a missing indicator.
    """
    breaks = breaks or _cells_for
    rows = draw(st.integers(1, max_rows))
    tables = {
        tensor.name: [
            [
                draw(_valid_cells(signature.feature(name), tensor.dtype, nulls))
                for name in tensor.features
            ]
            for _ in range(rows)
        ]
        for tensor in signature.inputs
    }
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2]))):
        tensor = draw(st.sampled_from(signature.inputs))
        row, position = (
            draw(st.integers(0, rows - 1)),
            draw(st.integers(0, len(tensor.features) - 1)),
        )
        feature = signature.feature(tensor.features[position])
        tables[tensor.name][row][position] = draw(breaks(feature, tensor.dtype))
    arrays = {}
    for tensor in signature.inputs:
        table = [[cell for cells in row for cell in cells] for row in tables[tensor.name]]
        if tensor.dtype == "string":
            array = np.empty((rows, len(table[0])), dtype=object)
            array[:, :] = table
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # as a client's cast would
                array = np.array(table, dtype=np.float64 if tensor.dtype != "int64" else object)
                array = array.astype(tensor.dtype)
        arrays[tensor.name] = array
    return arrays


def _held(indicator: Any, dtype: np.dtype[Any]) -> Any:
    try:
        with np.errstate(over="ignore"):
            return np.array(indicator, dtype=dtype).item()
    except OverflowError:
        return None


def _record_value(feature: Feature, cells: list[Any], dtype: np.dtype[Any]) -> Any:
    """What a record would hold for the cells of one feature: the inverse of ``to_arrays``.

    Cells no record value encodes become a value the records API refuses too.
    """
    if dtype.kind == "O":
        return cells[0]
    if feature.dtype in ("float", "int"):
        (value,) = cells
        if feature.missing == "indicator":
            indicator = _held(feature.missing_indicator, dtype)
            if value == indicator or (
                isinstance(indicator, float) and math.isnan(indicator) and math.isnan(value)
            ):
                return None
        return value
    if feature.dtype == "bool":
        return bool(cells[0]) if cells[0] in (0, 1) else cells[0]
    levels = list(feature.levels or ())
    if feature.encoding == "index":
        code = cells[0]
        whole = isinstance(code, int) or (math.isfinite(code) and code.is_integer())
        return levels[int(code)] if whole and 0 <= code < len(levels) else code
    if all(c in (0, 1) for c in cells) and sum(cells) == 1:
        return levels[cells.index(1)]
    return cells  # a list: no level


def records_of(signature: Signature, arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The records that tensors stand for: what ``to_arrays`` turns into exactly these tensors.

    A missing indicator becomes null; cells that encode no record value (two one-hot
    levels set, a code past the levels, 0.5 for a bool) become a value of the wrong type,
    which the records API refuses just as the tensor is refused.
    """
    rows = len(next(iter(arrays.values())))
    records: list[dict[str, Any]] = [{} for _ in range(rows)]
    for tensor in signature.inputs:
        array = arrays[tensor.name]
        start = 0
        for name in tensor.features:
            feature = signature.feature(name)
            width = _width(feature, tensor.dtype)
            for row, record in enumerate(records):
                cells = array[row, start : start + width].tolist()
                record[name] = _record_value(feature, cells, array.dtype)
            start += width
    return records


def _width(feature: Feature, dtype: str) -> int:
    one_hot = feature.dtype == "categorical" and feature.encoding == "onehot"
    return len(feature.levels or ()) if one_hot and dtype != "string" else 1
