"""What a drift window observes: one column per feature and per prediction, from model I/O.

Both request APIs (JSON records and v2 tensors) end in the same input tensors,
so the monitor reads features back out of those tensors and every API is seen
the same way. A feature's observed column is, by its dtype:

* ``float`` / ``int``: float64, NaN where the value is missing (or is NaN);
* ``bool``: int64 0 (false) or 1 (true), -1 where missing;
* ``categorical``: int64 index into the feature's ``levels``, -1 where missing;
* ``string``: object array of ``str``, ``None`` where missing.

A tensor cannot hold "nothing": a nullable feature's missing rows carry its
``missing_indicator``, so here a value equal to the indicator counts as missing.
Choose an indicator the feature never takes (as the signature's docs advise),
or its legitimate occurrences will count as nulls too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.reference import prediction_columns
from keel.signature import Feature, Signature
from keel.signature.arrays import feature_width
from keel.signature.model_input import TensorDtype

MISSING_CODE = -1
"""Code of a missing value in a bool or categorical feature's observed column."""
BOOL_LEVELS = ("false", "true")
"""Level names of a bool feature, as the reference statistics name them."""


def feature_columns(
    arrays: Mapping[str, npt.NDArray[Any]], signature: Signature
) -> dict[str, npt.NDArray[Any]]:
    """Split model input tensors (from ``to_arrays`` or a v2 request) into feature columns."""
    features = {f.name: f for f in signature.features}
    columns: dict[str, npt.NDArray[Any]] = {}
    for tensor in signature.inputs:
        array = np.asarray(arrays[tensor.name])
        array = array.reshape(array.shape[0], -1)
        offset = 0
        for name in tensor.features:
            feature = features[name]
            width = feature_width(feature, tensor.dtype)
            block = array[:, offset : offset + width]
            columns[name] = _feature_column(feature, block, tensor.dtype)
            offset += width
    return columns


def output_columns(
    outputs: Mapping[str, npt.NDArray[Any]], signature: Signature
) -> dict[str, npt.NDArray[Any]]:
    """Split the declared outputs of a model run into named prediction columns."""
    columns: dict[str, npt.NDArray[Any]] = {}
    for output in signature.outputs:
        if output.name in outputs:
            columns.update(prediction_columns(output.name, outputs[output.name], output.labels))
    return columns


def _feature_column(
    feature: Feature, block: npt.NDArray[Any], tensor_dtype: TensorDtype
) -> npt.NDArray[Any]:
    if feature.dtype in ("float", "int"):
        return _numeric(feature, block[:, 0])
    if feature.dtype == "bool":
        codes = block[:, 0].astype(np.bool_).astype(np.int64)
        return _mark_missing(feature, codes, int(bool(feature.missing_indicator)))
    if feature.dtype == "categorical":
        return _categorical(feature, block, tensor_dtype)
    values = np.array(block[:, 0], dtype=object)
    if feature.nullable:
        values[values == feature.missing_indicator] = None
    return values


def _numeric(feature: Feature, values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    numbers = values.astype(np.float64)
    indicator = feature.missing_indicator
    if feature.nullable and indicator is not None and not np.isnan(float(indicator)):
        # Compared in the tensor's dtype: a float32 tensor holds the indicator rounded.
        numbers[values == np.asarray(indicator).astype(values.dtype)] = np.nan
    return numbers


def _categorical(
    feature: Feature, block: npt.NDArray[Any], tensor_dtype: TensorDtype
) -> npt.NDArray[np.int64]:
    levels = feature.levels or ()
    if tensor_dtype == "string":
        index = {level: code for code, level in enumerate(levels)}
        codes = np.fromiter(
            (index.get(v, MISSING_CODE) for v in block[:, 0]), dtype=np.int64, count=len(block)
        )
    elif feature.encoding == "index":
        codes = block[:, 0].astype(np.int64)
    else:
        codes = np.argmax(block, axis=1).astype(np.int64)
    indicator = feature.missing_indicator
    return _mark_missing(feature, codes, levels.index(str(indicator)) if feature.nullable else 0)


def _mark_missing(
    feature: Feature, codes: npt.NDArray[np.int64], indicator_code: int
) -> npt.NDArray[np.int64]:
    if feature.nullable:
        codes[codes == indicator_code] = MISSING_CODE
    return codes
