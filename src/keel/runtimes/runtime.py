"""What every model runtime offers: tensor specs, a checked ``predict``, and ``close``."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from keel.errors import RuntimeFailure

# String tensors may arrive as numpy unicode arrays as well as object arrays; both hold
# Python strings, so accepting either is not a numeric cast.
_STRING_KINDS = frozenset({"O", "U"})


@dataclass(frozen=True)
class TensorSpec:
    """Name, numpy dtype name and shape of one model input or output (``None`` = dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        """Render the spec the way error messages show it, e.g. ``x: float32[?, 30]``."""
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"

    @functools.cached_property
    def numpy_dtype(self) -> np.dtype[Any]:
        """``dtype`` as a numpy dtype, which compares faster than names do."""
        return np.dtype(self.dtype)


def check_inputs(specs: tuple[TensorSpec, ...], inputs: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`RuntimeFailure` unless ``inputs`` match ``specs`` by name, dtype and shape."""
    expected = [spec.name for spec in specs]
    missing = [name for name in expected if name not in inputs]
    extra = sorted(name for name in inputs if name not in expected)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if extra:
            parts.append(f"unexpected input(s) {extra}")
        raise RuntimeFailure(f"{' and '.join(parts)}; the model expects {expected}")
    for spec in specs:
        _check_one(spec, inputs[spec.name])


def _check_one(spec: TensorSpec, value: object) -> None:
    if not isinstance(value, np.ndarray):
        raise RuntimeFailure(
            f"input '{spec.name}' must be a numpy array, got {type(value).__name__}"
        )
    if spec.dtype == "object":
        dtype_ok = value.dtype.kind in _STRING_KINDS
    else:
        dtype_ok = value.dtype == spec.numpy_dtype
    if not dtype_ok:
        # Never cast silently: a float64 feature quietly rounded to float32, or an int
        # label fed as a float, is exactly the bug a strict schema is there to catch.
        raise RuntimeFailure(
            f"input '{spec.name}' has dtype {value.dtype.name}, expected {spec.dtype}; "
            "convert it explicitly before calling predict"
        )
    if value.ndim != len(spec.shape) or any(
        want is not None and want != got for want, got in zip(spec.shape, value.shape, strict=True)
    ):
        raise RuntimeFailure(
            f"input '{spec.name}' has shape {tuple(value.shape)}, expected {spec.describe()}"
        )


class Runtime(ABC):
    """A loaded model: declared inputs and outputs, and a thread-safe ``predict``."""

    format: ClassVar[str]

    def __init__(self, inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...]) -> None:
        self._inputs = inputs
        self._outputs = outputs

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """The tensors ``predict`` expects, in the model's order."""
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        """The tensors ``predict`` returns, in the model's order."""
        return self._outputs

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``inputs`` against :attr:`inputs` and run the model; safe to call from threads."""
        check_inputs(self.inputs, inputs)
        return self._run(inputs)

    @abstractmethod
    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on inputs already checked against :attr:`inputs`."""

    @abstractmethod
    def close(self) -> None:
        """Release the model's resources; ``predict`` fails with RuntimeFailure afterwards."""
