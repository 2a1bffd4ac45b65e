"""load_runtime: sniff first, then the format's own checks, then the runtime."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from keel.errors import RuntimeFailure, UnsafeArtifact
from keel.runtimes import load_runtime
from keel.settings import RuntimeSettings


class TouchOnLoad:
    """An object whose unpickling creates ``marker``: proof of whether a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["model.onnx", "model.safetensors"])
@pytest.mark.parametrize("forward", [None, "numpy-mlp"])
def test_pickle_is_refused_before_anything_else_and_never_runs(
    tmp_path: Path, name: str, forward: str | None
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(TouchOnLoad(marker), protocol=4))
    with pytest.raises(UnsafeArtifact, match=r"(?s)pickle.*arbitrary code.*ONNX.*safetensors"):
        load_runtime(path, settings=RuntimeSettings(), forward=forward)
    assert not marker.exists()


def test_lying_safetensors_header_is_refused_before_the_forward_is_built(tmp_path: Path) -> None:
    header = json.dumps(
        {"layers.0.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}
    )
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(16))
    with pytest.raises(UnsafeArtifact, match="outside the 16-byte data section"):
        load_runtime(path, forward="no-such-forward")


def test_onnx_and_safetensors_are_told_apart_by_content(
    tmp_path: Path, breast_cancer_onnx: Path
) -> None:
    onnx_named_safetensors = tmp_path / "model.safetensors"
    onnx_named_safetensors.write_bytes(breast_cancer_onnx.read_bytes())
    assert load_runtime(onnx_named_safetensors).format == "onnx"

    safetensors_named_onnx = tmp_path / "model.onnx"
    save_file(
        {"layers.0.weight": np.eye(2, dtype=np.float32), "layers.0.bias": np.zeros(2, np.float32)},
        str(safetensors_named_onnx),
    )
    runtime = load_runtime(
        safetensors_named_onnx,
        forward="numpy-mlp",
        forward_config={"activation": "relu", "output": "identity"},
    )
    assert runtime.format == "safetensors"


def test_a_path_given_as_a_string_loads_too(breast_cancer_onnx: Path) -> None:
    # keel.load_runtime is public API: a user passes "model.onnx" as often as a Path.
    assert load_runtime(str(breast_cancer_onnx)).format == "onnx"


def test_missing_file_is_a_runtime_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match="cannot read model file"):
        load_runtime(tmp_path / "nothing.onnx")
