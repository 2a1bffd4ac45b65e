"""One input feature of a model: its type, its valid values, and what a missing value means.

The missing-value rules, settled here once for every path into a model:

* ``nullable`` says whether null (or an absent field) is an acceptable input.
  A tensor cannot hold "nothing", so a nullable feature must also say what the
  model receives instead: ``missing="indicator"`` with a ``missing_indicator``.
  ``nullable=True`` therefore requires ``missing="indicator"``, and
  ``missing="indicator"`` requires ``nullable=True``; the two are stated
  explicitly so that a reader of ``metadata.json`` never has to guess.
* Declare an indicator only when the model was trained with it: ``to_arrays``
  maps missing values to it on the training path too, so the model does see it.
  It is never filled in for a feature that did not declare it.
* The indicator has the feature's type: a finite number for ``float`` and
  ``int``, a bool for ``bool``, one of ``levels`` for ``categorical`` (the model
  sees that level's encoding), any string for ``string``.
* A ``float`` feature with ``allow_nan=True`` that is nullable must use NaN as
  its indicator, and NaN is accepted as an indicator only there. In a DataFrame
  NaN is also pandas' marker for a missing value, so a feature whose model tells
  NaN apart from "missing" could not be trained from DataFrames and served from
  JSON with the same result.

Freshness: ``max_age_s`` says how old a feature's value may be when it reaches
the model (seconds since it was computed, as the request says; see
``keel.signature.freshness``), and ``on_stale`` what happens to an older one:
``"reject"`` the record, or only ``"count"`` it. ``on_stale`` means nothing
without ``max_age_s``, so ``"count"`` alone is refused rather than ignored.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from keel.signature.fields import FrozenSequence, Name

FeatureDtype = Literal["float", "int", "bool", "categorical", "string"]
MissingPolicy = Literal["reject", "indicator"]
Encoding = Literal["onehot", "index"]
StalePolicy = Literal["reject", "count"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


class Feature(BaseModel):
    """One named input column of a model, with the values it accepts."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    name: Name
    dtype: FeatureDtype
    minimum: int | float | None = Field(default=None, allow_inf_nan=False)
    maximum: int | float | None = Field(default=None, allow_inf_nan=False)
    nullable: bool = False
    missing: MissingPolicy = "reject"
    missing_indicator: bool | int | float | str | None = Field(
        default=None,
        description=(
            "What the model receives for a missing value. Declare it only if the model "
            "was trained with this indicator; to_arrays applies it on the training path too."
        ),
    )
    allow_nan: bool = False
    levels: FrozenSequence[str] | None = None
    encoding: Encoding | None = None
    max_age_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        strict=True,
        description="How old, in seconds since it was computed, a value may be when served.",
    )
    on_stale: StalePolicy = Field(
        default="reject",
        description="What a value older than max_age_s does: reject its record, or only count.",
    )
    description: str = ""
    unit: str = ""

    @model_serializer(mode="wrap")
    def _freshness_only_when_declared(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A feature without max_age_s is written as it was before freshness existed, so
        # metadata.json stays readable by keel versions whose Feature forbids unknown fields.
        data = handler(self)
        if self.max_age_s is None and isinstance(data, dict):
            data.pop("max_age_s", None)
            data.pop("on_stale", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _categorical_encoding_defaults_to_onehot(cls, data: Any) -> Any:
        is_categorical = isinstance(data, dict) and data.get("dtype") == "categorical"
        if is_categorical and data.get("encoding") is None:
            return {**data, "encoding": "onehot"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        self._check_bounds()
        self._check_categorical()
        if self.allow_nan and self.dtype != "float":
            raise ValueError(f"feature '{self.name}': allow_nan applies to float features only")
        self._check_missing()
        if self.on_stale != "reject" and self.max_age_s is None:
            raise ValueError(
                f"feature '{self.name}': on_stale='{self.on_stale}' needs max_age_s "
                "(there is no age to be stale against)"
            )
        return self

    def _check_bounds(self) -> None:
        bounds = [b for b in (self.minimum, self.maximum) if b is not None]
        if not bounds:
            return
        if self.dtype not in ("float", "int"):
            raise ValueError(
                f"feature '{self.name}': minimum/maximum apply to float and int features only"
            )
        if any(isinstance(b, bool) for b in bounds):
            raise ValueError(f"feature '{self.name}': minimum/maximum must be numbers")
        if self.dtype == "int" and any(
            not isinstance(b, int) or not INT64_MIN <= b <= INT64_MAX for b in bounds
        ):
            raise ValueError(f"feature '{self.name}': an int feature needs 64-bit integer bounds")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(
                f"feature '{self.name}': minimum {self.minimum} is above maximum {self.maximum}"
            )

    def _check_categorical(self) -> None:
        if self.dtype != "categorical":
            if self.levels is not None:
                raise ValueError(
                    f"feature '{self.name}': levels apply to categorical features only"
                )
            if self.encoding is not None:
                raise ValueError(
                    f"feature '{self.name}': encoding applies to categorical features only"
                )
            return
        if not self.levels:
            raise ValueError(f"feature '{self.name}': a categorical feature needs levels")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"feature '{self.name}': levels must be unique")

    def _check_missing(self) -> None:
        if self.missing == "indicator" and not self.nullable:
            raise ValueError(
                f"feature '{self.name}': missing='indicator' needs nullable=True "
                "(an indicator is only used for null values)"
            )
        if self.nullable and self.missing != "indicator":
            raise ValueError(
                f"feature '{self.name}': a nullable feature needs missing='indicator' and the "
                "missing_indicator the model was trained with (a tensor cannot hold null)"
            )
        if self.missing != "indicator":
            if self.missing_indicator is not None:
                raise ValueError(
                    f"feature '{self.name}': missing_indicator needs missing='indicator'"
                )
            return
        if self.missing_indicator is None:
            raise ValueError(
                f"feature '{self.name}': missing='indicator' needs a missing_indicator"
            )
        problem = _indicator_problem(self, self.missing_indicator)
        if problem:
            raise ValueError(f"feature '{self.name}': missing_indicator {problem}")


def _indicator_problem(feature: Feature, indicator: bool | int | float | str) -> str:
    """Say why an indicator does not fit its feature, or return '' when it does."""
    if feature.dtype == "float":
        if not isinstance(indicator, int | float) or isinstance(indicator, bool):
            return "must be a number for a float feature"
        is_nan = isinstance(indicator, float) and math.isnan(indicator)
        if feature.allow_nan and not is_nan:
            return "must be NaN when allow_nan is true (a DataFrame cannot tell NaN from missing)"
        if not feature.allow_nan and not math.isfinite(indicator):
            return "must be finite (NaN is an indicator only for features with allow_nan)"
    elif feature.dtype == "int":
        if not isinstance(indicator, int) or isinstance(indicator, bool):
            return "must be an integer for an int feature"
        if not INT64_MIN <= indicator <= INT64_MAX:
            return "must fit in a 64-bit integer"
    elif feature.dtype == "bool":
        if not isinstance(indicator, bool):
            return "must be true or false for a bool feature"
    elif not isinstance(indicator, str):
        return f"must be a string for a {feature.dtype} feature"
    elif feature.levels is not None and indicator not in feature.levels:
        return "must be one of the levels (the model sees that level's encoding)"
    return ""
