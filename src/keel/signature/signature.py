"""The signature of a model: its features, its input tensors and its outputs, defined once.

Training code and the server hold the same ``Signature`` (it is stored in the
registry's ``metadata.json``), validate with the same rules and build model
inputs with the same function, so a feature cannot be computed two ways.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from keel.errors import SignatureError
from keel.signature.arrays import feature_width, to_arrays
from keel.signature.feature import Feature
from keel.signature.fields import FrozenSequence
from keel.signature.model_input import ModelInput, TensorDtype
from keel.signature.output import Output
from keel.signature.records import record_validator
from keel.signature.values import FLOAT32_MAX, FeatureValue

DEFAULT_INPUT = "input"
"""Name of the one float32 input tensor a signature gets when it declares no inputs."""

# Which feature dtypes each tensor dtype can hold without losing what the value means.
_ACCEPTS: dict[str, frozenset[str]] = {
    "float32": frozenset({"float", "int", "bool", "categorical"}),
    "float64": frozenset({"float", "int", "bool", "categorical"}),
    "int64": frozenset({"int", "bool", "categorical"}),
    "int32": frozenset({"int", "bool", "categorical"}),
    "bool": frozenset({"bool"}),
    "string": frozenset({"string", "categorical"}),
}
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class Signature(BaseModel):
    """The feature and output schema of a model, shared by training code and the server."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    features: FrozenSequence[Feature] = Field(min_length=1)
    outputs: FrozenSequence[Output] = Field(min_length=1)
    # The empty default is never kept: _default_input fills in the one-tensor default
    # before validation, and an explicitly empty list is refused by min_length.
    inputs: FrozenSequence[ModelInput] = Field(
        default=(),
        min_length=1,
        description="Input tensors; when omitted, one float32 'input' of every feature in order.",
    )
    # Things derived from the signature once (validator, array plans); private
    # attributes may be set on a frozen model, and are not part of its JSON.
    _compiled: dict[str, object] = PrivateAttr(default_factory=dict)

    @property
    def compiled_cache(self) -> dict[str, object]:
        """Per-signature cache of derived objects, for keel.signature's own modules."""
        # Straight from pydantic's private-attribute dict: ``self._compiled`` goes through
        # BaseModel.__getattr__, measured at 2.9 µs, on every request.
        private = self.__pydantic_private__
        cache: dict[str, object] = private["_compiled"] if private is not None else self._compiled
        return cache

    @model_validator(mode="before")
    @classmethod
    def _default_input(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("inputs") is not None:
            return data
        features = data.get("features")
        if not isinstance(features, list | tuple):
            return data
        names = [f.name if isinstance(f, Feature) else _name_of(f) for f in features]
        if not all(isinstance(name, str) for name in names):
            return data
        # Repeated feature names are reported by the uniqueness check, not as a bad input.
        unique = list(dict.fromkeys(names))
        default = {"name": DEFAULT_INPUT, "dtype": "float32", "features": unique}
        return {**data, "inputs": [default]}

    @model_validator(mode="after")
    def _consistent(self) -> Signature:
        for kind, names in (
            ("feature", [f.name for f in self.features]),
            ("output", [o.name for o in self.outputs]),
            ("input", [i.name for i in self.inputs]),
        ):
            duplicates = sorted(n for n, seen in Counter(names).items() if seen > 1)
            if duplicates:
                raise ValueError(f"{kind} names must be unique; repeated: {duplicates}")
        self._check_inputs()
        return self

    def _check_inputs(self) -> None:
        features = {f.name: f for f in self.features}
        used: dict[str, str] = {}
        for tensor in self.inputs:
            for name in tensor.features:
                if name not in features:
                    raise ValueError(f"input '{tensor.name}' names unknown feature '{name}'")
                if name in used:
                    raise ValueError(
                        f"feature '{name}' is used by inputs '{used[name]}' and '{tensor.name}'"
                    )
                used[name] = tensor.name
                _check_fits(features[name], tensor.name, tensor.dtype)
        unused = [name for name in features if name not in used]
        if unused:
            raise ValueError(f"features not used by any input: {unused}")

    def feature(self, name: str) -> Feature:
        """Return the feature called ``name``."""
        for feature in self.features:
            if feature.name == name:
                return feature
        known = ", ".join(f.name for f in self.features)
        raise SignatureError(f"no feature named '{name}'; the features are: {known}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature names in declared order."""
        return tuple(f.name for f in self.features)

    @property
    def float32_features(self) -> frozenset[str]:
        """Names of float features packed into float32 tensors (their values must fit float32)."""
        dtypes = {f.name: f.dtype for f in self.features}
        return frozenset(
            name
            for tensor in self.inputs
            if tensor.dtype == "float32"
            for name in tensor.features
            if dtypes[name] == "float"
        )

    def input_width(self, name: str) -> int:
        """Return the number of columns of input tensor ``name`` (its shape is [N, width])."""
        for tensor in self.inputs:
            if tensor.name == name:
                return sum(feature_width(self.feature(f), tensor.dtype) for f in tensor.features)
        raise SignatureError(f"no input named '{name}'")

    def to_json(self, indent: int | None = 2) -> str:
        """Serialise to JSON; NaN indicators are written as the ``NaN`` literal."""
        return self.model_dump_json(indent=indent, exclude_none=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Signature:
        """Parse a signature from JSON, raising ``SignatureError`` if it is malformed."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as error:
            raise SignatureError(f"invalid signature: {describe(error)}") from error

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Signature:
        """Read a signature from a JSON file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise SignatureError(f"cannot read a signature from {path}: {error}") from error
        return cls.from_json(text)

    def validate_records(self, records: object) -> list[dict[str, FeatureValue]]:
        """Check JSON records; return them with every feature present, null where missing.

        Raises ``InvalidRequest`` listing every violation in every record.
        """
        return record_validator(self).validate(records)

    def records_json_schema(self) -> dict[str, Any]:
        """Return the JSON Schema of a request body: a list of records."""
        return record_validator(self).json_schema()

    def to_arrays(self, data: object) -> dict[str, npt.NDArray[Any]]:
        """Build the model's input tensors from records, a dict of columns or a DataFrame."""
        return to_arrays(data, self)


def describe(error: ValidationError) -> str:
    """Summarise a pydantic validation error as one line that names where it is."""
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _name_of(item: object) -> object:
    return item.get("name") if isinstance(item, dict) else None


def _check_fits(feature: Feature, tensor: str, dtype: TensorDtype) -> None:
    """Refuse a feature a tensor of this dtype cannot hold faithfully."""
    if feature.dtype not in _ACCEPTS[dtype]:
        raise ValueError(
            f"feature '{feature.name}' ({feature.dtype}) cannot go into {dtype} input '{tensor}'"
        )
    if dtype == "float32" and feature.dtype == "float":
        low, high = feature.minimum, feature.maximum
        if (low is not None and low > FLOAT32_MAX) or (high is not None and high < -FLOAT32_MAX):
            raise ValueError(
                f"feature '{feature.name}' goes into float32 input '{tensor}', but its bounds "
                "leave no value a float32 can hold"
            )
    if dtype == "int32" and feature.dtype == "int":
        low, high = feature.minimum, feature.maximum
        if low is None or high is None or low < _INT32_MIN or high > _INT32_MAX:
            raise ValueError(
                f"feature '{feature.name}' goes into int32 input '{tensor}', so it must declare "
                "minimum and maximum within the int32 range (values would wrap otherwise)"
            )
