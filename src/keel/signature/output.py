"""One output tensor of a model: its dtype, its shape, and what its values mean."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from keel.signature.fields import FrozenSequence, Name

OutputDtype = Literal["float32", "float64", "int64", "int32", "bool", "string"]
OutputKind = Literal["probability", "score", "label", "regression"]

_FLOAT_KINDS = ("probability", "score", "regression")


class Output(BaseModel):
    """A named model output; the first dimension of ``shape`` is the batch (``None``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    dtype: OutputDtype
    shape: FrozenSequence[int | None]
    kind: OutputKind
    labels: FrozenSequence[str] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Output:
        if not self.shape or self.shape[0] is not None:
            raise ValueError(
                f"output '{self.name}': shape must start with None, the batch dimension"
            )
        if any(d is not None and d < 1 for d in self.shape[1:]):
            raise ValueError(f"output '{self.name}': dimensions after the batch must be >= 1")
        if self.kind in _FLOAT_KINDS and self.dtype not in ("float32", "float64"):
            raise ValueError(f"output '{self.name}': a {self.kind} output must be float32/float64")
        self._check_labels()
        return self

    def _check_labels(self) -> None:
        if self.labels is None:
            return
        if self.kind not in ("probability", "label"):
            raise ValueError(
                f"output '{self.name}': labels apply to probability and label outputs only"
            )
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"output '{self.name}': labels must be non-empty and unique")
        width = self.shape[-1] if self.kind == "probability" and len(self.shape) > 1 else None
        if width is not None and width != len(self.labels):
            raise ValueError(
                f"output '{self.name}': {len(self.labels)} labels for a last dimension of {width}"
            )
