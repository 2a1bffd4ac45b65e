"""The contract between the safetensors runtime and a forward implementation."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from keel.runtimes.runtime import TensorSpec


@dataclass(frozen=True)
class ForwardPass:
    """A forward pass bound to its weights: what it takes, what it gives, and how to run it.

    ``run`` receives inputs already checked against ``inputs`` and must be safe to call
    from several threads at once (the weights are shared and read-only).
    ``cost_bounded_by_shape`` promises that no input value makes ``run`` slower than
    other values of the same shapes (no loops or branches on values); only then may the
    server call it on its event loop.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    run: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
    cost_bounded_by_shape: bool = False


@runtime_checkable
class Forward(Protocol):
    """Code that turns named weights and a config into a :class:`ForwardPass`."""

    def build(self, weights: Mapping[str, np.ndarray], config: Mapping[str, object]) -> ForwardPass:
        """Check ``weights`` and ``config`` (RuntimeFailure if unusable) and bind them."""
        ...
