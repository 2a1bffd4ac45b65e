"""Run safetensors weights, memory-mapped, through a forward implementation from the registry."""

from __future__ import annotations

import mmap
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from keel.errors import KeelError, RuntimeFailure
from keel.runtimes.forward_pass import Forward, ForwardPass
from keel.runtimes.runtime import Runtime
from keel.runtimes.safetensors_header import SafetensorsHeader


class SafetensorsRuntime(Runtime):
    """Weights viewed in place from a read-only memory map, computed by a named forward."""

    format: ClassVar[str] = "safetensors"

    def __init__(
        self,
        path: Path,
        header: SafetensorsHeader,
        forward: Forward,
        config: Mapping[str, object],
    ) -> None:
        """Map ``path`` (its ``header`` already checked) and build ``forward`` on the weights."""
        self._path = path
        weights = map_weights(path, header)
        try:
            built = forward.build(weights, MappingProxyType(dict(config)))
        except KeelError:
            raise
        except Exception as exc:
            # Forward implementations may come from other packages; whatever they raise,
            # the caller is promised a RuntimeFailure.
            raise RuntimeFailure(f"forward pass for {path} could not be built: {exc}") from exc
        super().__init__(built.inputs, built.outputs)
        self._pass: ForwardPass | None = built
        self._shape_bound = built.cost_bounded_by_shape

    def _run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Read once: close() may clear the attribute while this call runs, and the local
        # reference keeps the weights mapped until the call returns.
        built = self._pass
        if built is None:
            raise RuntimeFailure(f"the safetensors model {self._path} has been closed")
        try:
            return built.run(inputs)
        except KeelError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"forward pass for {self._path} failed: {exc}") from exc

    def _cost_caveat(self) -> str | None:
        if self._shape_bound:
            return None
        return "its forward pass does not declare its cost bounded by input shapes"

    def close(self) -> None:
        # The mapping itself is released when the last array viewing it is collected;
        # closing it by hand would fail (BufferError) while a predict still runs.
        self._pass = None


def map_weights(path: Path, header: SafetensorsHeader) -> Mapping[str, np.ndarray]:
    """Return every tensor in the file as a read-only, zero-copy view of a memory map."""
    try:
        with path.open("rb") as stream:
            # ACCESS_READ makes the pages read-only: no write can reach the file, and the
            # arrays built on top refuse writes too.
            mapping = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise RuntimeFailure(f"cannot memory-map {path}: {exc}") from exc
    if len(mapping) != header.data_start + header.data_size:
        raise RuntimeFailure(
            f"{path} changed size since its header was checked; refusing to read it"
        )
    data = np.frombuffer(mapping, dtype=np.uint8, count=header.data_size, offset=header.data_start)
    return MappingProxyType(
        {
            name: data[tensor.begin : tensor.end].view(np.dtype(tensor.dtype)).reshape(tensor.shape)
            for name, tensor in header.tensors.items()
        }
    )
