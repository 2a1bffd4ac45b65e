"""Dense layers bound to a float32 forward pass: what "numpy-mlp" and "torch-mlp" share.

The two forwards differ only in how a file lays the layers out (tensor names, and
weights stored ``[in, out]`` or ``[out, in]``). Each reads its layout into
:class:`DenseLayer` values and binds them here, so the config, the arithmetic and
the outputs are one thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from keel.errors import RuntimeFailure
from keel.runtimes.forward_pass import ForwardPass
from keel.runtimes.runtime import TensorSpec

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
    def parse(cls, forward: str, config: Mapping[str, object]) -> MlpConfig:
        """Read and check the config of ``forward``; RuntimeFailure names it and what is wrong."""
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise RuntimeFailure(
                f"{forward}: unknown config key(s) {unknown}; known: {sorted(_CONFIG_KEYS)}"
            )
        input_name = config.get("input_name", "input")
        if not isinstance(input_name, str) or not input_name:
            raise RuntimeFailure(
                f"{forward}: config 'input_name' must be a non-empty string, got {input_name!r}"
            )
        activation = _choice(forward, config, "activation", tuple(_ACTIVATIONS))
        output = _choice(forward, config, "output", _OUTPUTS)
        return cls(activation=activation, input_name=input_name, output=output)


def _choice(forward: str, config: Mapping[str, object], key: str, choices: tuple[str, ...]) -> str:
    value = config.get(key)
    for choice in choices:
        if value == choice:
            return choice
    if value is None:
        raise RuntimeFailure(f"{forward}: config '{key}' is required: one of {list(choices)}")
    raise RuntimeFailure(f"{forward}: config '{key}' must be one of {list(choices)}, got {value!r}")


@dataclass(frozen=True)
class DenseLayer:
    """One dense layer: ``x @ weight + bias``, float32 weight ``[in, out]`` and bias ``[out]``."""

    weight: np.ndarray
    bias: np.ndarray


def check_float(forward: str, name: str, tensor: np.ndarray) -> None:
    """Refuse a tensor that is not floating-point, naming ``forward`` and the tensor."""
    if tensor.dtype.kind != "f":
        raise RuntimeFailure(
            f"{forward}: {name} has dtype {tensor.dtype.name}; expected a floating-point type"
        )


def as_float32(tensor: np.ndarray) -> np.ndarray:
    """``tensor`` itself when it is float32 (a zero-copy view of the file), else converted once."""
    return tensor.astype(np.float32, copy=False)


def bind_dense_layers(layers: Sequence[DenseLayer], settings: MlpConfig) -> ForwardPass:
    """Bind checked, chaining ``layers`` to a float32 forward pass configured by ``settings``."""
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
        run=partial(_forward, tuple(layers), settings),
        # Dense layers and a softmax: the same arithmetic whatever the values are.
        cost_bounded_by_shape=True,
    )


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
