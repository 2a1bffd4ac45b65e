"""The built-in "numpy-mlp" forward: dense layers in float32."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from keel.errors import RuntimeFailure
from keel.runtimes import TensorSpec, load_runtime
from keel.runtimes.numpy_mlp import NUMPY_MLP
from keel.runtimes.torch_mlp import TORCH_MLP
from mlp_state_dict import save_state_dict, state_dict, train_iris_mlp

RNG = np.random.default_rng(7)
SOFTMAX = {"activation": "relu", "output": "softmax"}


def mlp_weights(*widths: int, dtype: type = np.float32) -> dict[str, np.ndarray]:
    weights: dict[str, np.ndarray] = {}
    for index, (fan_in, fan_out) in enumerate(pairwise(widths)):
        weights[f"layers.{index}.weight"] = RNG.normal(size=(fan_in, fan_out)).astype(dtype)
        weights[f"layers.{index}.bias"] = RNG.normal(size=fan_out).astype(dtype)
    return weights


def reference(weights: dict[str, np.ndarray], x: np.ndarray, activation: str) -> np.ndarray:
    """The same network written out plainly in float64."""
    count = len(weights) // 2
    hidden = x.astype(np.float64)
    for index in range(count):
        hidden = hidden @ weights[f"layers.{index}.weight"] + weights[f"layers.{index}.bias"]
        if index < count - 1:
            hidden = np.maximum(hidden, 0) if activation == "relu" else np.tanh(hidden)
    return hidden


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_identity_output_matches_plain_numpy(activation: str) -> None:
    weights = mlp_weights(5, 8, 8, 3)
    forward = NUMPY_MLP.build(weights, {"activation": activation, "output": "identity"})
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    prediction = forward.run({"input": x})["prediction"]
    assert prediction.dtype == np.float32
    np.testing.assert_allclose(prediction, reference(weights, x, activation), rtol=1e-5, atol=1e-5)


def test_softmax_output_gives_probabilities_and_labels() -> None:
    weights = mlp_weights(4, 6, 3)
    forward = NUMPY_MLP.build(weights, SOFTMAX | {"input_name": "features"})
    x = RNG.normal(size=(10, 4)).astype(np.float32)
    result = forward.run({"features": x})
    logits = reference(weights, x, "relu")
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result["label"], logits.argmax(axis=1))
    assert result["label"].dtype == np.int64
    assert forward.inputs == (TensorSpec("features", "float32", (None, 4)),)
    assert forward.outputs == (
        TensorSpec("probabilities", "float32", (None, 3)),
        TensorSpec("label", "int64", (None,)),
    )


def test_huge_logits_do_not_overflow_softmax() -> None:
    weights = {
        "layers.0.weight": np.array([[1e4, -1e4]], np.float32),
        "layers.0.bias": np.zeros(2, np.float32),
    }
    result = NUMPY_MLP.build(weights, SOFTMAX).run({"input": np.ones((1, 1), np.float32)})
    np.testing.assert_allclose(result["probabilities"], [[1.0, 0.0]])


def test_float64_weights_are_computed_in_float32() -> None:
    forward = NUMPY_MLP.build(
        mlp_weights(3, 2, dtype=np.float64), {"activation": "tanh", "output": "identity"}
    )
    assert forward.run({"input": np.ones((1, 3), np.float32)})["prediction"].dtype == np.float32


def test_float32_weights_are_used_in_place_not_copied() -> None:
    weights = mlp_weights(3, 2)
    forward = NUMPY_MLP.build(weights, SOFTMAX)
    weights["layers.0.weight"][:] = 0
    weights["layers.0.bias"][:] = [5.0, 0.0]
    assert forward.run({"input": np.ones((1, 3), np.float32)})["label"].tolist() == [0]


def without(weights: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    return {key: value for key, value in weights.items() if key != name}


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (
            mlp_weights(4, 5)
            | {
                "layers.1.weight": np.ones((6, 2), np.float32),
                "layers.1.bias": np.ones(2, np.float32),
            },
            "layer 1 takes 6 inputs but layer 0 gives 5 outputs",
        ),
        (
            mlp_weights(4, 5) | {"layers.0.bias": np.ones(4, np.float32)},
            r"weight \[4, 5\] and bias \[4\]",
        ),
        (
            mlp_weights(4, 5) | {"layers.0.weight": np.ones(20, np.float32)},
            "expected \\[in, out\\]",
        ),
        (without(mlp_weights(4, 5), "layers.0.bias"), "layer 0 has no bias"),
        (without(mlp_weights(4, 5, 2), "layers.0.weight"), "layer 0 has no weight"),
        (
            {k.replace("layers.1", "layers.2"): v for k, v in mlp_weights(4, 5, 2).items()},
            "without gaps",
        ),
        (
            mlp_weights(4, 5) | {"head.weight": np.ones((5, 2), np.float32)},
            "unexpected tensor 'head.weight'",
        ),
        (
            mlp_weights(4, 5) | {"layers.00.weight": np.ones((5, 2), np.float32)},
            "unexpected tensor 'layers.00.weight'",
        ),
        ({}, "holds no"),
        (
            mlp_weights(4, 5) | {"layers.0.weight": np.ones((4, 5), np.int64)},
            "dtype int64; expected a floating",
        ),
        (
            {
                "layers.0.weight": np.ones((4, 0), np.float32),
                "layers.0.bias": np.ones(0, np.float32),
            },
            "empty weight",
        ),
    ],
    ids=[
        "chain-mismatch",
        "bias-width",
        "weight-rank",
        "missing-bias",
        "missing-weight",
        "index-gap",
        "stray-tensor",
        "leading-zero",
        "no-layers",
        "integer-weights",
        "zero-width",
    ],
)
def test_weights_that_do_not_form_an_mlp_are_refused_at_build(
    weights: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(RuntimeFailure, match=message):
        NUMPY_MLP.build(weights, SOFTMAX)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"output": "softmax"}, "'activation' is required: one of \\['relu', 'tanh'\\]"),
        ({"activation": "gelu", "output": "softmax"}, "got 'gelu'"),
        ({"activation": "relu"}, "'output' is required: one of \\['softmax', 'identity'\\]"),
        (SOFTMAX | {"input_name": ""}, "'input_name' must be a non-empty string"),
        (SOFTMAX | {"input_name": 3}, "'input_name' must be a non-empty string"),
        (SOFTMAX | {"activaton": "relu"}, "unknown config key\\(s\\) \\['activaton'\\]"),
    ],
)
def test_bad_config_is_refused_at_build(config: dict[str, object], message: str) -> None:
    with pytest.raises(RuntimeFailure, match=message):
        NUMPY_MLP.build(mlp_weights(3, 2), config)


def test_a_bad_config_is_refused_naming_numpy_mlp() -> None:
    with pytest.raises(RuntimeFailure, match=r"^numpy-mlp: config 'output' is required"):
        NUMPY_MLP.build(mlp_weights(3, 2), {"activation": "relu"})


# numpy-mlp's advice, with the config it was given, for a file torch-mlp reads as it is.
TORCH_MLP_ADVICE = (
    r"it looks like a PyTorch state_dict \(nn.Linear weights \[out, in\]\), which torch-mlp "
    r"reads as it is, as nn.Linear layers 4 -> 16 -> 8 -> 3: publish the same file with "
    r"--forward torch-mlp --forward-config '\{\"activation\": \"relu\", \"output\": "
    r"\"softmax\"\}' \(forward=\"torch-mlp\" in keel.publish\)$"
)


def test_a_pytorch_state_dict_is_refused_naming_torch_mlp_and_the_config(tmp_path: Path) -> None:
    trained = train_iris_mlp()
    path = save_state_dict(state_dict(trained.classifier), tmp_path / "model.safetensors")
    # The file lists '0.bias' first (safetensors orders tensors of one dtype by name), so this is
    # the refusal a PyTorch user meets.
    with pytest.raises(
        RuntimeFailure,
        match=r"^numpy-mlp: unexpected tensor '0.bias'; expected only 'layers.\{i\}.weight' "
        rf"and 'layers.\{{i\}}.bias'; {TORCH_MLP_ADVICE}",
    ):
        load_runtime(path, forward="numpy-mlp", forward_config=SOFTMAX)


@pytest.mark.parametrize(
    ("prefix", "step", "numpy_mlp_says"),
    [
        # Names numpy-mlp would take, but weights [out, in]: the bias gives it away.
        (
            "layers.",
            1,
            r"layer 0 has weight \[16, 4\] and bias \[16\]; expected \[in, out\] and \[out\]",
        ),
        ("layers.", 2, r"layer indices \[0, 2, 4\] must run 0, 1, 2, ... without gaps"),
        (
            "net.",
            2,
            r"unexpected tensor 'net.0.weight'; expected only 'layers.\{i\}.weight' and "
            r"'layers.\{i\}.bias'",
        ),
    ],
    ids=["ModuleList", "self.layers-Sequential", "other-prefix"],
)
def test_other_pytorch_layouts_are_refused_naming_torch_mlp(
    prefix: str, step: int, numpy_mlp_says: str
) -> None:
    weights = state_dict(train_iris_mlp().classifier, prefix, step)
    with pytest.raises(RuntimeFailure, match=f"^numpy-mlp: {numpy_mlp_says}; {TORCH_MLP_ADVICE}"):
        NUMPY_MLP.build(weights, SOFTMAX)


def test_linear_layers_without_bias_are_refused_naming_torch_mlp() -> None:
    weights = state_dict(train_iris_mlp().classifier, "layers.", 1, bias=False)
    with pytest.raises(
        RuntimeFailure, match=f"^numpy-mlp: layer 0 has no bias; {TORCH_MLP_ADVICE}"
    ):
        NUMPY_MLP.build(weights, SOFTMAX)


def test_a_pytorch_model_torch_mlp_cannot_run_either_is_refused_with_its_reason() -> None:
    # nn.Sequential(Linear(4, 16), BatchNorm1d(16), ReLU(), Linear(16, 3))
    weights = state_dict(train_iris_mlp().classifier) | {
        "1.running_mean": np.zeros(16, np.float32),
        "1.running_var": np.ones(16, np.float32),
    }
    with pytest.raises(
        RuntimeFailure,
        match=r"^numpy-mlp: unexpected tensor '0.weight'.*; the names look like a PyTorch "
        r"state_dict, but torch-mlp, which reads those, refuses it too \(torch-mlp: unexpected "
        r"tensor '1.running_mean'; .*torch.onnx.export",
    ):
        NUMPY_MLP.build(weights, SOFTMAX)


def test_square_layers_read_either_way_so_the_forward_name_declares_the_layout() -> None:
    # [in, out] or [out, in]: square weights fit both, and nothing in the file says which.
    weight = RNG.normal(size=(3, 3)).astype(np.float32)
    bias = np.zeros(3, np.float32)
    identity = {"activation": "relu", "output": "identity"}
    x = RNG.normal(size=(2, 3)).astype(np.float32)
    as_numpy = NUMPY_MLP.build({"layers.0.weight": weight, "layers.0.bias": bias}, identity)
    as_torch = TORCH_MLP.build({"layers.0.weight": weight, "layers.0.bias": bias}, identity)
    np.testing.assert_allclose(as_numpy.run({"input": x})["prediction"], x @ weight, rtol=1e-6)
    np.testing.assert_allclose(as_torch.run({"input": x})["prediction"], x @ weight.T, rtol=1e-6)
