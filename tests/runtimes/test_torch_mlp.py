"""The built-in "torch-mlp" forward: a PyTorch MLP's state_dict, read as it is saved."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from keel.errors import RuntimeFailure
from keel.runtimes import TensorSpec, known_forwards, load_runtime
from keel.runtimes.forwards import resolve_forward
from keel.runtimes.torch_mlp import TORCH_MLP
from mlp_state_dict import save_state_dict, state_dict, train_iris_mlp

SOFTMAX = {"activation": "relu", "output": "softmax"}


def test_torch_mlp_is_built_in() -> None:
    assert resolve_forward("torch-mlp") is TORCH_MLP
    assert "torch-mlp" in known_forwards()


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize(
    ("prefix", "step"),
    [("", 2), ("layers.", 2), ("layers.", 1), ("net.body.", 2)],
    ids=["nn.Sequential", "self.layers-Sequential", "ModuleList", "nested-module"],
)
def test_a_state_dict_saved_as_it_is_gives_the_trained_models_probabilities(
    tmp_path: Path, prefix: str, step: int, activation: str
) -> None:
    trained = train_iris_mlp(activation)
    path = save_state_dict(
        state_dict(trained.classifier, prefix, step), tmp_path / "model.safetensors"
    )
    runtime = load_runtime(
        path, forward="torch-mlp", forward_config={"activation": activation, "output": "softmax"}
    )
    result = runtime.predict({"input": trained.features})
    expected = trained.classifier.predict_proba(trained.features)
    np.testing.assert_allclose(result["probabilities"], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(result["label"], expected.argmax(axis=1))
    assert runtime.inputs == (TensorSpec("input", "float32", (None, 4)),)


def test_linear_layers_without_bias_add_nothing() -> None:
    trained = train_iris_mlp()
    # The same network with every bias zero, as nn.Linear(bias=False) computes it.
    unbiased = copy.deepcopy(trained.classifier)
    unbiased.intercepts_ = [np.zeros_like(b) for b in unbiased.intercepts_]
    forward = TORCH_MLP.build(state_dict(trained.classifier, bias=False), SOFTMAX)
    np.testing.assert_allclose(
        forward.run({"input": trained.features})["probabilities"],
        unbiased.predict_proba(trained.features),
        rtol=1e-5,
        atol=1e-7,
    )


def test_identity_output_gives_the_logits() -> None:
    trained = train_iris_mlp()
    forward = TORCH_MLP.build(
        state_dict(trained.classifier), {"activation": "relu", "output": "identity"}
    )
    logits = forward.run({"input": trained.features})["prediction"]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(
        shifted / shifted.sum(axis=1, keepdims=True),
        trained.classifier.predict_proba(trained.features),
        rtol=1e-5,
        atol=1e-7,
    )
    assert forward.outputs == (TensorSpec("prediction", "float32", (None, 3)),)
    assert forward.cost_bounded_by_shape


def test_float64_weights_are_computed_in_float32() -> None:
    trained = train_iris_mlp()
    wide = {k: v.astype(np.float64) for k, v in state_dict(trained.classifier).items()}
    result = TORCH_MLP.build(wide, SOFTMAX).run({"input": trained.features})
    assert result["probabilities"].dtype == np.float32
    np.testing.assert_allclose(
        result["probabilities"], trained.classifier.predict_proba(trained.features), rtol=1e-5
    )


def test_float32_weights_are_used_in_place_not_copied() -> None:
    weights = {"0.weight": np.ones((2, 3), np.float32), "0.bias": np.zeros(2, np.float32)}
    forward = TORCH_MLP.build(weights, SOFTMAX)
    weights["0.weight"][:] = 0
    weights["0.bias"][:] = [0.0, 5.0]
    assert forward.run({"input": np.ones((1, 3), np.float32)})["label"].tolist() == [1]


def _linear(out: int, fan_in: int, name: str = "0") -> dict[str, np.ndarray]:
    return {
        f"{name}.weight": np.ones((out, fan_in), np.float32),
        f"{name}.bias": np.ones(out, np.float32),
    }


ONNX_ADVICE = "runs only nn.Linear layers with activations between them.*torch.onnx.export"


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (
            # nn.Sequential(Linear(4, 16), BatchNorm1d(16), ReLU(), Linear(16, 3))
            _linear(16, 4)
            | {
                "1.weight": np.ones(16, np.float32),
                "1.bias": np.zeros(16, np.float32),
                "1.running_mean": np.zeros(16, np.float32),
                "1.running_var": np.ones(16, np.float32),
                "1.num_batches_tracked": np.array(0, np.int64),
            }
            | _linear(3, 16, "3"),
            f"torch-mlp: unexpected tensor '1.running_mean'; torch-mlp {ONNX_ADVICE}",
        ),
        (
            _linear(16, 4) | {"1.num_batches_tracked": np.array(0, np.int64)},
            "unexpected tensor '1.num_batches_tracked'",
        ),
        (
            # A LayerNorm's weight and bias fit the names but not nn.Linear's shape.
            _linear(16, 4) | {"1.weight": np.ones(16, np.float32)},
            rf"'1.weight' has shape \[16\], but an nn.Linear weight is \[out, in\]; "
            rf"torch-mlp {ONNX_ADVICE}",
        ),
        (
            _linear(16, 4) | _linear(3, 16, "layers.2"),
            r"tensors '0.weight' and 'layers.2.weight' have different prefixes "
            r"\('' and 'layers.'\)",
        ),
        (
            _linear(16, 4) | _linear(3, 7, "2"),
            r"'0.weight' \[16, 4\] and '2.weight' \[3, 7\] do not chain: the first gives 16 "
            r"outputs but the second takes 7 inputs \(nn.Linear weights are \[out, in\]",
        ),
        (
            _linear(16, 4) | {"0.weight": np.ones((16, 4), np.int64)},
            "torch-mlp: '0.weight' has dtype int64; expected a floating-point type",
        ),
        (
            _linear(16, 4) | {"0.bias": np.ones(16, np.int32)},
            "'0.bias' has dtype int32",
        ),
        (
            {"0.weight": np.ones((0, 4), np.float32)},
            r"'0.weight' is an empty weight \[0, 4\]",
        ),
        (
            _linear(16, 4) | {"2.bias": np.ones(3, np.float32)},
            "'2.bias' has no weight '2.weight' beside it",
        ),
        (
            _linear(16, 4) | {"0.bias": np.ones(4, np.float32)},
            r"'0.bias' has shape \[4\] but '0.weight' \[16, 4\] gives 16 outputs; expected \[16\]",
        ),
        (
            _linear(16, 4) | {"00.weight": np.ones((3, 16), np.float32)},
            "unexpected tensor '00.weight'",
        ),
        ({}, "torch-mlp: the file holds no '{i}.weight' tensors"),
    ],
    ids=[
        "batchnorm",
        "batch-counter",
        "layernorm",
        "mixed-prefixes",
        "no-chain",
        "integer-weight",
        "integer-bias",
        "empty-weight",
        "bias-without-weight",
        "bias-width",
        "leading-zero",
        "no-layers",
    ],
)
def test_anything_but_linear_layers_is_refused_naming_the_tensor(
    weights: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(RuntimeFailure, match=message):
        TORCH_MLP.build(weights, SOFTMAX)


def test_a_bad_config_is_refused_naming_torch_mlp() -> None:
    with pytest.raises(RuntimeFailure, match=r"^torch-mlp: config 'activation' must be one of"):
        TORCH_MLP.build(_linear(3, 4), {"activation": "gelu", "output": "softmax"})
