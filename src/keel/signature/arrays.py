"""Model input tensors built from records, a dict of columns or a DataFrame, by one function.

Every path ends in :func:`columns_to_arrays`, so training code and the server
cannot encode a feature two ways: records are validated by the request
validator and transposed into columns, columns and DataFrames are checked
column by column, and then the same checked columns become the same arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from keel.errors import FieldError, InvalidRequest
from keel.signature.columns import FeatureColumn, check_table
from keel.signature.feature import Feature
from keel.signature.model_input import TensorDtype
from keel.signature.records import record_validator
from keel.signature.rules import kind_of
from keel.signature.tables import Table, is_dataframe, list_values, read_table
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
        validated = record_validator(signature).validate(data)
        table = records_table(validated, signature.feature_names)
    elif is_dataframe(data) or isinstance(data, Mapping):
        table = read_table(data)
    else:
        message = f"expected records, a dict of columns or a DataFrame, got {kind_of(data)}"
        raise InvalidRequest([FieldError(None, "", "not_a_record", message)])
    return columns_to_arrays(table.rows, check_table(table, signature), signature)


def records_table(records: Sequence[Mapping[str, FeatureValue]], names: Sequence[str]) -> Table:
    """Transpose validated records (every feature present) into columns."""
    columns = {name: list_values([record[name] for record in records]) for name in names}
    return Table(len(records), columns, [])


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
