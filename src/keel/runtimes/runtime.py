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

    @functools.cached_property
    def fixed_dims(self) -> tuple[tuple[int, int], ...]:
        """``(axis, size)`` of every dimension that is not dynamic: what a value must match."""
        return tuple((axis, size) for axis, size in enumerate(self.shape) if size is not None)


def check_inputs(specs: tuple[TensorSpec, ...], inputs: Mapping[str, np.ndarray]) -> None:
    """Raise :class:`RuntimeFailure` unless ``inputs`` match ``specs`` by name, dtype and shape."""
    try:
        values = [inputs[spec.name] for spec in specs] if len(inputs) == len(specs) else None
    except KeyError:
        values = None
    if values is None:
        expected = [spec.name for spec in specs]
        missing = [name for name in expected if name not in inputs]
        extra = sorted(name for name in inputs if name not in expected)
        parts = []
        if missing:
            parts.append(f"missing input(s) {missing}")
        if extra:
            parts.append(f"unexpected input(s) {extra}")
        raise RuntimeFailure(f"{' and '.join(parts)}; the model expects {expected}")
    for spec, value in zip(specs, values, strict=True):
        _check_one(spec, value)


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
    if value.ndim != len(spec.shape) or not _fixed_dims_match(spec, value.shape):
        raise RuntimeFailure(
            f"input '{spec.name}' has shape {tuple(value.shape)}, expected {spec.describe()}"
        )


def _fixed_dims_match(spec: TensorSpec, shape: tuple[int, ...]) -> bool:
    # A plain loop: all() over a generator costs more than the check on a hot path.
    for axis, want in spec.fixed_dims:  # noqa: SIM110
        if shape[axis] != want:
            return False
    return True


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

    @property
    def value_dependent_cost(self) -> str | None:
        """Why a run may cost more than its input shapes say; None when the shapes bound it.

        The server calls a model on its event loop only when this is None (and warm-up
        was fast): the loop must never meet an input that makes a run slower than the
        warm-up rows were. Strings cost what their lengths say, whatever the runtime.
        """
        strings = [spec.name for spec in self._inputs if spec.dtype == "object"]
        if strings:
            return f"its input(s) {strings} hold strings, whose lengths set the cost of a run"
        return self._cost_caveat()

    def _cost_caveat(self) -> str | None:
        """What about this runtime lets values set the cost; runtimes that know better say so."""
        return f"the {self.format} runtime does not say that input shapes bound its cost"

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
