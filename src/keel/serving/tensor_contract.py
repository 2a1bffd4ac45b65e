"""What one model version accepts as input tensors (the v2 protocol path).

The model's own specs say which tensors it takes, of which dtype and shape;
the signature's rules (``keel.signature.tensors``) say which values each
column may hold, the same rules the records API applies to a record's fields.
Both are fixed when a version loads, so a clean request passes with a few
numpy comparisons, and only a refused one is looked at value by value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from keel.errors import FieldError, InvalidRequest
from keel.runtimes import TensorSpec
from keel.serving.protocols import datatype_of
from keel.signature import Signature
from keel.signature.tensors import MAX_REPORTED, TensorRules, tensor_rules


@dataclass(frozen=True)
class TensorContract:
    """What one model version accepts as input tensors: names, dtypes, shapes and value rules."""

    specs: Mapping[str, TensorSpec]
    rules: Mapping[str, TensorRules]

    def check(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise InvalidRequest naming the tensor or feature, row and rule of every violation."""
        if self._clean(inputs):
            return
        errors: list[FieldError] = []
        rows = {a.shape[0] if a.ndim else -1 for a in inputs.values()}
        for name in inputs:
            if name not in self.specs:
                errors.append(
                    FieldError(
                        None,
                        name,
                        "unknown_field",
                        f"the model has no input '{name}' (inputs: {sorted(self.specs)})",
                    )
                )
        for name, spec in self.specs.items():
            array = inputs.get(name)
            if array is None:
                errors.append(FieldError(None, name, "required", f"input '{name}' is missing"))
                continue
            problem = _shape_problem(spec, array)
            if problem:
                errors.append(FieldError(None, name, "type", problem))
            elif name in self.rules:
                errors.extend(self.rules[name].violations(array, MAX_REPORTED))
        if not errors and len(rows) > 1:
            errors.append(FieldError(None, "", "type", "inputs disagree on the batch size"))
        if errors:
            raise InvalidRequest(errors[:MAX_REPORTED])

    def _clean(self, inputs: Mapping[str, np.ndarray]) -> bool:
        """Whether ``inputs`` break no rule: the request path's question, answered cheaply.

        False is not a verdict: ``check`` then looks again and names what is wrong.
        """
        if len(inputs) != len(self.specs):
            return False
        rows = -1
        for name, array in inputs.items():
            spec = self.specs.get(name)
            if spec is None or _shape_problem(spec, array) is not None:
                return False
            if rows != array.shape[0]:
                if rows >= 0:
                    return False
                rows = array.shape[0]
            rules = self.rules.get(name)
            if rules is not None and not rules.holds(array):
                return False
        return True


def build_contract(signature: Signature, specs: tuple[TensorSpec, ...]) -> TensorContract:
    """The contract of a model with these input specs, under the rules of ``signature``."""
    return TensorContract({s.name: s for s in specs}, tensor_rules(signature))


def _shape_problem(spec: TensorSpec, array: np.ndarray) -> str | None:
    # Comparing dtypes is cheap; their names (for the message) are not.
    if array.dtype != spec.numpy_dtype and not (
        spec.dtype == "object" and array.dtype.kind in "OU"
    ):
        got = "object" if array.dtype.kind in "OU" else array.dtype.name
        return f"input '{spec.name}' must be {_v2(spec.dtype)}, got {_v2(got)}"
    if array.ndim != len(spec.shape) or any(
        d is not None and d != actual for d, actual in zip(spec.shape, array.shape, strict=False)
    ):
        dims = ", ".join("-1" if d is None else str(d) for d in spec.shape)
        return f"input '{spec.name}' must have shape [{dims}], got {list(array.shape)}"
    if array.ndim == 0 or array.shape[0] == 0:
        return f"input '{spec.name}' holds no rows"
    return None


def _v2(dtype: str) -> str:
    return datatype_of(np.dtype(dtype))
