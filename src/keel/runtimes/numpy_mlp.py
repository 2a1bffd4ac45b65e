"""The "numpy-mlp" forward: a stack of dense layers computed in float32 with numpy."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np

from keel.errors import RuntimeFailure
from keel.runtimes.forward_pass import ForwardPass
from keel.runtimes.runtime import TensorSpec

_LAYER_TENSOR = re.compile(r"layers\.(0|[1-9][0-9]*)\.(weight|bias)")
_ACTIVATIONS: Mapping[str, Callable[[np.ndarray], None]] = {
    "relu": lambda hidden: np.maximum(hidden, 0, out=hidden),
    "tanh": lambda hidden: np.tanh(hidden, out=hidden),
}
_OUTPUTS = ("softmax", "identity")
_CONFIG_KEYS = frozenset({"activation", "input_name", "output"})


@dataclass(frozen=True)
class MlpConfig:
    """How the dense layers are used: activation between layers, input name, output head."""

    activation: str
    input_name: str
    output: str

    @classmethod
    def parse(cls, config: Mapping[str, object]) -> MlpConfig:
        """Read and check the forward config; RuntimeFailure names what is wrong."""
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise RuntimeFailure(
                f"numpy-mlp: unknown config key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}"
            )
        input_name = config.get("input_name", "input")
        if not isinstance(input_name, str) or not input_name:
            raise RuntimeFailure(
                f"numpy-mlp: config 'input_name' must be a non-empty string, got {input_name!r}"
            )
        activation = _choice(config, "activation", tuple(_ACTIVATIONS))
        output = _choice(config, "output", _OUTPUTS)
        return cls(activation=activation, input_name=input_name, output=output)


def _choice(config: Mapping[str, object], key: str, choices: tuple[str, ...]) -> str:
    value = config.get(key)
    for choice in choices:
        if value == choice:
            return choice
    raise RuntimeFailure(f"numpy-mlp: config '{key}' must be one of {list(choices)}, got {value!r}")


@dataclass(frozen=True)
class DenseLayer:
    """One dense layer: ``x @ weight + bias`` with weight ``[in, out]`` and bias ``[out]``."""

    weight: np.ndarray
    bias: np.ndarray


class NumpyMlp:
    """Dense layers named ``layers.{i}.weight`` ([in, out]) and ``layers.{i}.bias`` ([out])."""

    def build(self, weights: Mapping[str, np.ndarray], config: Mapping[str, object]) -> ForwardPass:
        """Check that the layers chain and bind them to a float32 forward pass."""
        settings = MlpConfig.parse(config)
        layers = _layers(weights)
        features = layers[0].weight.shape[0]
        width = layers[-1].weight.shape[1]
        outputs: tuple[TensorSpec, ...]
        if settings.output == "softmax":
            outputs = (
                TensorSpec("probabilities", "float32", (None, width)),
                TensorSpec("label", "int64", (None,)),
            )
        else:
            outputs = (TensorSpec("prediction", "float32", (None, width)),)
        return ForwardPass(
            inputs=(TensorSpec(settings.input_name, "float32", (None, features)),),
            outputs=outputs,
            run=partial(_forward, layers, settings),
            # Dense layers and a softmax: the same arithmetic whatever the values are.
            cost_bounded_by_shape=True,
        )


NUMPY_MLP = NumpyMlp()


def _layers(weights: Mapping[str, np.ndarray]) -> tuple[DenseLayer, ...]:
    found: dict[int, dict[str, np.ndarray]] = {}
    for name, tensor in weights.items():
        match = _LAYER_TENSOR.fullmatch(name)
        if match is None:
            raise RuntimeFailure(
                f"numpy-mlp: unexpected tensor '{name}'; expected only "
                "'layers.{i}.weight' and 'layers.{i}.bias'"
            )
        found.setdefault(int(match[1]), {})[match[2]] = tensor
    if not found:
        raise RuntimeFailure("numpy-mlp: the file holds no 'layers.{i}.weight' tensors")
    if sorted(found) != list(range(len(found))):
        raise RuntimeFailure(
            f"numpy-mlp: layer indices {sorted(found)} must run 0, 1, 2, ... without gaps"
        )
    layers: list[DenseLayer] = []
    for index in range(len(found)):
        layer = _layer(index, found[index])
        if layers and layers[-1].weight.shape[1] != layer.weight.shape[0]:
            raise RuntimeFailure(
                f"numpy-mlp: layer {index} takes {layer.weight.shape[0]} inputs but layer "
                f"{index - 1} gives {layers[-1].weight.shape[1]} outputs"
            )
        layers.append(layer)
    return tuple(layers)


def _layer(index: int, tensors: Mapping[str, np.ndarray]) -> DenseLayer:
    missing = sorted({"weight", "bias"} - set(tensors))
    if missing:
        raise RuntimeFailure(f"numpy-mlp: layer {index} has no {' or '.join(missing)}")
    weight, bias = tensors["weight"], tensors["bias"]
    for part, tensor in (("weight", weight), ("bias", bias)):
        if tensor.dtype.kind != "f":
            raise RuntimeFailure(
                f"numpy-mlp: layers.{index}.{part} has dtype {tensor.dtype.name}; "
                "expected a floating-point type"
            )
    if weight.ndim != 2 or bias.ndim != 1 or weight.shape[1] != bias.shape[0]:
        raise RuntimeFailure(
            f"numpy-mlp: layer {index} has weight {list(weight.shape)} and bias "
            f"{list(bias.shape)}; expected [in, out] and [out]"
        )
    if 0 in weight.shape:
        raise RuntimeFailure(f"numpy-mlp: layer {index} has an empty weight {list(weight.shape)}")
    # float32 weights stay zero-copy views of the file; other widths are converted once.
    return DenseLayer(weight.astype(np.float32, copy=False), bias.astype(np.float32, copy=False))


def _forward(
    layers: tuple[DenseLayer, ...], settings: MlpConfig, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    activation = _ACTIVATIONS[settings.activation]
    hidden = inputs[settings.input_name]
    for index, layer in enumerate(layers):
        hidden = hidden @ layer.weight
        hidden += layer.bias
        if index < len(layers) - 1:
            activation(hidden)
    if settings.output == "identity":
        return {"prediction": hidden}
    hidden -= hidden.max(axis=1, keepdims=True)
    np.exp(hidden, out=hidden)
    hidden /= hidden.sum(axis=1, keepdims=True)
    return {"probabilities": hidden, "label": hidden.argmax(axis=1).astype(np.int64)}
