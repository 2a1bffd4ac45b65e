"""Hypothesis strategies for signatures, valid records for them, and values they must refuse."""

from __future__ import annotations

import math
import string
from typing import Any

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
