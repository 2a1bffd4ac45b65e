"""Safetensors weights, memory-mapped and run through a registered forward."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from keel.errors import RuntimeFailure
from keel.runtimes import Runtime, TensorSpec, check_safetensors_header, load_runtime
from keel.runtimes.safetensors_runtime import map_weights

MLP = {"activation": "tanh", "output": "softmax"}
RNG = np.random.default_rng(11)


@pytest.fixture
def weights() -> dict[str, np.ndarray]:
    return {
        "layers.0.weight": RNG.normal(size=(4, 16)).astype(np.float32),
        "layers.0.bias": RNG.normal(size=16).astype(np.float32),
        "layers.1.weight": RNG.normal(size=(16, 3)).astype(np.float32),
        "layers.1.bias": RNG.normal(size=3).astype(np.float32),
    }


@pytest.fixture
def model_path(tmp_path: Path, weights: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "model.safetensors"
    save_file(weights, str(path))
    return path


@pytest.fixture
def runtime(model_path: Path) -> Runtime:
    return load_runtime(model_path, forward="numpy-mlp", forward_config=MLP)


def test_mlp_matches_plain_numpy(runtime: Runtime, weights: dict[str, np.ndarray]) -> None:
    x = RNG.normal(size=(8, 4)).astype(np.float32)
    hidden = np.tanh(x @ weights["layers.0.weight"] + weights["layers.0.bias"])
    logits = hidden @ weights["layers.1.weight"] + weights["layers.1.bias"]
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    result = runtime.predict({"input": x})
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result["label"], expected.argmax(axis=1))
    assert runtime.format == "safetensors"
    assert runtime.inputs == (TensorSpec("input", "float32", (None, 4)),)


def test_weights_are_read_only_views_of_the_mapped_file(model_path: Path) -> None:
    mapped = map_weights(model_path, check_safetensors_header(model_path))
    weight = mapped["layers.0.weight"]
    assert not weight.flags.writeable
    assert not weight.flags.owndata
    with pytest.raises(ValueError, match="read-only"):
        weight[0, 0] = 1.0


def test_wrong_dtype_is_refused_not_cast(runtime: Runtime) -> None:
    with pytest.raises(RuntimeFailure, match="input 'input' has dtype float64, expected float32"):
        runtime.predict({"input": np.zeros((1, 4))})


def test_concurrent_predictions_agree(runtime: Runtime) -> None:
    x = RNG.normal(size=(64, 4)).astype(np.float32)
    expected = runtime.predict({"input": x})["probabilities"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda row: runtime.predict({"input": x[row : row + 1]}), range(64))
        )
    got = np.concatenate([result["probabilities"] for result in results])
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_predict_after_close_fails_clearly(runtime: Runtime) -> None:
    runtime.close()
    with pytest.raises(RuntimeFailure, match="has been closed"):
        runtime.predict({"input": np.zeros((1, 4), np.float32)})


def test_a_forward_is_required(model_path: Path) -> None:
    with pytest.raises(
        RuntimeFailure, match=r"need a forward implementation: name one with --forward NAME.*mlp"
    ):
        load_runtime(model_path)


def test_an_unknown_forward_lists_the_known_ones(model_path: Path) -> None:
    with pytest.raises(RuntimeFailure, match=r"unknown forward implementation 'bert'.*numpy-mlp"):
        load_runtime(model_path, forward="bert", forward_config=MLP)


def test_weights_that_do_not_fit_the_forward_are_a_runtime_failure(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({"embedding": np.ones((3, 2), np.float32)}, str(path))
    with pytest.raises(RuntimeFailure, match="unexpected tensor 'embedding'"):
        load_runtime(path, forward="numpy-mlp", forward_config=MLP)


# The first layer alone is 16384 x 16384 float32 values: exactly 1 GiB.
WIDTH = 16384
MEMORY_PROBE = """
import json, sys
from pathlib import Path

import numpy as np
import psutil

from keel.runtimes import load_runtime

def memory():
    info = psutil.Process().memory_info()
    # rss counts pages of the mapped file that were read; rss - shared is what the
    # process allocated itself (heap, copies).
    return {"rss": info.rss, "private": info.rss - info.shared}

before = memory()
runtime = load_runtime(
    Path(sys.argv[1]), forward="numpy-mlp",
    forward_config={"activation": "relu", "output": "identity"},
)
loaded = memory()
batch = np.ones((4, int(sys.argv[2])), dtype=np.float32)
prediction = runtime.predict({"input": batch})["prediction"]
predicted = memory()
print(json.dumps({
    "before": before, "loaded": loaded, "predicted": predicted,
    "prediction": prediction.tolist(),
}))
"""


def write_large_mlp(path: Path, first_row: np.ndarray, rest: dict[str, np.ndarray]) -> None:
    """Write a 1 GiB first layer without holding it in memory: only its first row is data."""
    big = WIDTH * WIDTH * 4
    entries = {"layers.0.weight": ("F32", [WIDTH, WIDTH], 0, big)}
    offset = big
    for name, tensor in rest.items():
        entries[name] = ("F32", list(tensor.shape), offset, offset + tensor.nbytes)
        offset += tensor.nbytes
    header = json.dumps(
        {
            name: {"dtype": d, "shape": s, "data_offsets": [b, e]}
            for name, (d, s, b, e) in entries.items()
        }
    ).encode()
    header += b" " * (-len(header) % 8)  # keep the data section 8-byte aligned
    with path.open("wb") as stream:
        stream.write(struct.pack("<Q", len(header)) + header)
        stream.write(first_row.tobytes())
        # Seeking past the end leaves a hole the filesystem reads back as zeros.
        stream.seek(8 + len(header) + big)
        for tensor in rest.values():
            stream.write(tensor.tobytes())


def test_large_file_is_mapped_not_read(tmp_path: Path) -> None:
    first_row = np.linspace(-1, 1, WIDTH, dtype=np.float32)
    rest: dict[str, np.ndarray] = {
        "layers.0.bias": np.full(WIDTH, 0.25, dtype=np.float32),
        "layers.1.weight": RNG.normal(size=(WIDTH, 3)).astype(np.float32) / 100,
        "layers.1.bias": np.array([1.0, 2.0, 3.0], dtype=np.float32),
    }
    path = tmp_path / "large.safetensors"
    write_large_mlp(path, first_row, rest)
    assert path.stat().st_size > 2**30

    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(path), str(WIDTH)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(probe.stdout)

    # Every input row is ones, so x @ W0 is the sum of W0's rows: its first row.
    hidden = np.maximum(first_row + rest["layers.0.bias"], 0)
    expected = hidden @ rest["layers.1.weight"] + rest["layers.1.bias"]
    np.testing.assert_allclose(report["prediction"], np.tile(expected, (4, 1)), rtol=1e-4)
    limit = 256 * 2**20
    # Loading maps the file and reads none of it.
    assert report["loaded"]["rss"] - report["before"]["rss"] < limit
    # Predicting reads every weight through the mapping, as shared page cache, without
    # copying the weights into the process's own memory.
    assert report["predicted"]["private"] - report["before"]["private"] < limit
