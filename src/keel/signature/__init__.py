"""The feature and output schema of a model, defined once and used by training and serving alike.

A :class:`Signature` declares a model's features (types, ranges, nullability,
what a missing value becomes, categorical levels), how they are packed into
input tensors, and what the outputs mean. It validates JSON records with a
generated pydantic model and converts records, columns or DataFrames into
model inputs through one shared function, :func:`to_arrays`.
"""

from keel.signature.arrays import to_arrays
from keel.signature.feature import Encoding, Feature, FeatureDtype, MissingPolicy, StalePolicy
from keel.signature.freshness import (
    COMPUTED_AT_FIELD,
    COMPUTED_AT_PARAMETER,
    Freshness,
    FreshnessResult,
    freshness_of,
    split_computed_at,
)
from keel.signature.model_input import ModelInput, TensorDtype
from keel.signature.output import Output, OutputDtype, OutputKind
from keel.signature.records import RecordValidator, record_validator
from keel.signature.rules import Rule
from keel.signature.signature import DEFAULT_INPUT, Signature
from keel.signature.synthetic import synthetic_records
from keel.signature.values import FeatureValue

__all__ = [
    "COMPUTED_AT_FIELD",
    "COMPUTED_AT_PARAMETER",
    "DEFAULT_INPUT",
    "Encoding",
    "Feature",
    "FeatureDtype",
    "FeatureValue",
    "Freshness",
    "FreshnessResult",
    "MissingPolicy",
    "ModelInput",
    "Output",
    "OutputDtype",
    "OutputKind",
    "RecordValidator",
    "Rule",
    "Signature",
    "StalePolicy",
    "TensorDtype",
    "freshness_of",
    "record_validator",
    "split_computed_at",
    "synthetic_records",
    "to_arrays",
]
