"""One input tensor of a model and the feature columns it is built from."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from keel.signature.fields import FrozenSequence, Name

TensorDtype = Literal["float32", "float64", "int64", "int32", "bool", "string"]


class ModelInput(BaseModel):
    """A model input tensor: the features it concatenates, in order, and its dtype.

    Numeric tensors hold floats and ints as they are, bools as 0/1, and
    categorical features one-hot over their levels or as their level index (per
    the feature's ``encoding``). A ``string`` tensor is an object array of
    ``str`` and holds string features and categorical features (as the level
    itself); nothing else goes into it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    dtype: TensorDtype
    features: FrozenSequence[Name] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_features(self) -> ModelInput:
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"input '{self.name}': lists a feature more than once")
        return self
