"""Model input tensors built from records, a dict of columns or a DataFrame, by one function.

Every path ends in :func:`columns_to_arrays`, so training code and the server
cannot encode a feature two ways: records are validated by the request
validator and transposed into columns, columns and DataFrames are checked
column by column, and then the same checked columns become the same arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from keel.errors import FieldError, InvalidRequest
from keel.signature.columns import CANONICAL_DTYPES, PLACEHOLDERS, FeatureColumn, check_table
from keel.signature.fast_records import float_records
from keel.signature.feature import Feature
from keel.signature.model_input import TensorDtype
from keel.signature.records import record_validator
from keel.signature.rules import kind_of
from keel.signature.tables import is_dataframe, read_table
from keel.signature.values import FeatureValue

if TYPE_CHECKING:
    from keel.signature.signature import Signature


def to_arrays(data: object, signature: Signature) -> dict[str, npt.NDArray[Any]]:
    """Build the model's input tensors, by input name, from validated data.

    ``data`` is a list of records (dicts), a dict of columns (name -> sequence or
    1-D array) or a pandas DataFrame. Each tensor has its ``ModelInput`` dtype and
    shape [N, width]; string tensors are object arrays of str. Raises
    ``InvalidRequest`` listing every violation.
    """
    if isinstance(data, list | tuple):
        fast = float_records(signature)
        if fast is not None and (arrays := fast.arrays(data)) is not None:
            return arrays
        validated = record_validator(signature).validate(data)
        plan = dense_plan(signature)
        if plan is not None:
            return {tensor.name: tensor.build(validated) for tensor in plan}
        return columns_to_arrays(len(validated), validated_columns(validated, signature), signature)
    if is_dataframe(data) or isinstance(data, Mapping):
        table = read_table(data)
    else:
        message = f"expected records, a dict of columns or a DataFrame, got {kind_of(data)}"
        raise InvalidRequest([FieldError(None, "", "not_a_record", message)])
    return columns_to_arrays(table.rows, check_table(table, signature), signature)


# Python ints above this lose precision on their way into a float32 through a
# double, which a column cast from int64 would not; such features take the
# column path so that every path gives bit-identical tensors.
_EXACT_INT_IN_FLOAT32 = 2**24


@dataclass(frozen=True)
class DenseTensor:
    """A numeric tensor whose columns are one feature each, built row by row from records."""

    name: str
    dtype: np.dtype[Any]
    features: tuple[str, ...]
    fills: tuple[FeatureValue, ...]
    nullable: bool

    def build(self, records: Sequence[Mapping[str, FeatureValue]]) -> npt.NDArray[Any]:
        """The tensor of validated records: one list per row, one numpy conversion."""
        names = self.features
        if self.nullable:
            pairs = tuple(zip(names, self.fills, strict=True))
            rows: list[list[FeatureValue]] = [
                [fill if (value := record[name]) is None else value for name, fill in pairs]
                for record in records
            ]
        else:
            rows = [[record[name] for name in names] for record in records]
        return np.array(rows, dtype=self.dtype).reshape(len(records), len(names))


def dense_plan(signature: Signature) -> tuple[DenseTensor, ...] | None:
    """How to build every input straight from records, or None when a feature needs encoding.

    Most tabular models take one float tensor of numeric features; for them the
    per-column work of the general path is pure overhead on small requests.
    """
    cache = signature.compiled_cache
    if "dense_plan" not in cache:
        cache["dense_plan"] = _build_dense_plan(signature)
    plan = cache["dense_plan"]
    return plan if isinstance(plan, tuple) else None


def _build_dense_plan(signature: Signature) -> tuple[DenseTensor, ...] | None:
    features = {f.name: f for f in signature.features}
    plan = []
    for tensor in signature.inputs:
        members = [features[name] for name in tensor.features]
        if tensor.dtype == "string" or not all(_dense_ok(f, tensor.dtype) for f in members):
            return None
        plan.append(
            DenseTensor(
                name=tensor.name,
                dtype=np.dtype(tensor.dtype),
                features=tuple(tensor.features),
                fills=tuple(_indicator(f) for f in members),
                nullable=any(f.nullable for f in members),
            )
        )
    return tuple(plan)


def _dense_ok(feature: Feature, tensor_dtype: TensorDtype) -> bool:
    if feature.dtype in ("float", "bool"):
        return True
    if feature.dtype != "int":
        return False
    if tensor_dtype in ("int64", "int32", "float64"):
        return True
    bounds = (feature.minimum, feature.maximum)
    return all(b is not None and abs(b) <= _EXACT_INT_IN_FLOAT32 for b in bounds)


def validated_columns(
    records: Sequence[Mapping[str, FeatureValue]], signature: Signature
) -> dict[str, FeatureColumn]:
    """Canonical columns of records the request validator has already checked.

    The validator has applied every rule and canonicalised every value (None only
    where the feature is nullable), so the column checks would only repeat it;
    on the request path that repetition cost about a millisecond per record.
    """
    columns: dict[str, FeatureColumn] = {}
    for feature in signature.features:
        values: list[object] = [record[feature.name] for record in records]
        missing = np.fromiter((v is None for v in values), dtype=np.bool_, count=len(values))
        if missing.any():
            placeholder = PLACEHOLDERS[feature.dtype]
            values = [placeholder if v is None else v for v in values]
        if feature.dtype == "categorical":
            codes = {level: code for code, level in enumerate(feature.levels or ())}
            values = [codes.get(v, 0) if isinstance(v, str) else 0 for v in values]
        if feature.dtype == "string":
            array = np.empty(len(values), dtype=object)
            array[:] = values
        else:
            array = np.array(values, dtype=CANONICAL_DTYPES[feature.dtype])
        columns[feature.name] = FeatureColumn(array, missing)
    return columns


def columns_to_arrays(
    rows: int, columns: Mapping[str, FeatureColumn], signature: Signature
) -> dict[str, npt.NDArray[Any]]:
    """Encode checked feature columns into the signature's input tensors."""
    features = {f.name: f for f in signature.features}
    arrays: dict[str, npt.NDArray[Any]] = {}
    for tensor in signature.inputs:
        widths = [feature_width(features[name], tensor.dtype) for name in tensor.features]
        dtype = np.object_ if tensor.dtype == "string" else np.dtype(tensor.dtype)
        array = np.empty((rows, sum(widths)), dtype=dtype)
        offset = 0
        for name, width in zip(tensor.features, widths, strict=True):
            block = array[:, offset : offset + width]
            _encode(features[name], columns[name], tensor.dtype, block)
            offset += width
        arrays[tensor.name] = array
    return arrays


def feature_width(feature: Feature, tensor_dtype: TensorDtype) -> int:
    """Return how many tensor columns a feature takes in a tensor of this dtype."""
    one_hot = feature.dtype == "categorical" and feature.encoding == "onehot"
    if one_hot and tensor_dtype != "string":
        return len(feature.levels or ())
    return 1


def _encode(
    feature: Feature, column: FeatureColumn, tensor_dtype: TensorDtype, block: npt.NDArray[Any]
) -> None:
    """Write one feature's values, missing ones replaced by its indicator, into ``block``."""
    if feature.dtype != "categorical":
        block[:, 0] = _filled(column, _indicator(feature))
        return
    levels = feature.levels or ()
    codes = column.values
    if column.missing.any():
        codes = _filled(column, levels.index(str(feature.missing_indicator)))
    if tensor_dtype == "string":
        block[:, 0] = np.array(levels, dtype=object)[codes]
    elif feature.encoding == "index":
        block[:, 0] = codes
    else:
        block[...] = 0
        block[np.arange(len(codes)), codes] = 1


def _filled(column: FeatureColumn, indicator: object) -> npt.NDArray[Any]:
    """Return the column's values with the indicator in every missing row."""
    if not column.missing.any():
        return column.values
    # Not np.where: it would turn a str indicator into a numpy string, which drops
    # trailing NUL characters.
    values = column.values.copy()
    values[column.missing] = indicator
    return values


def _indicator(feature: Feature) -> Any:
    """Return the declared indicator in the type of the feature's canonical column."""
    indicator = feature.missing_indicator
    if feature.dtype == "float" and indicator is not None:
        return float(indicator)
    return indicator
