"""The "numpy-mlp" forward: dense layers stored ``[in, out]``, computed in float32 with numpy.

Its layout is ``layers.{i}.weight`` ``[in, out]`` and ``layers.{i}.bias`` ``[out]``,
indices 0, 1, 2, ... A PyTorch state_dict is laid out otherwise (weights ``[out, in]``,
indices that skip activations, any prefix); "torch-mlp" reads that as it is, and a
file refused here that torch-mlp would read is refused with that advice. No layout is
guessed from the shapes: a stack of square layers reads either way, so the forward a
model is published with is what declares its layout.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import numpy as np

from keel.errors import RuntimeFailure
from keel.runtimes.dense_layers import (
    DenseLayer,
    MlpConfig,
    as_float32,
    bind_dense_layers,
    check_float,
)
from keel.runtimes.forward_pass import ForwardPass
from keel.runtimes.torch_mlp import read_linear_layers

NAME = "numpy-mlp"
_LAYER_TENSOR = re.compile(r"layers\.(0|[1-9][0-9]*)\.(weight|bias)")
# A module path ending in a layer index: the shape of every PyTorch state_dict name.
_MODULE_TENSOR = re.compile(r"(?:.+\.)?(?:0|[1-9][0-9]*)\.[A-Za-z_][A-Za-z0-9_]*")


class NumpyMlp:
    """Dense layers named ``layers.{i}.weight`` ([in, out]) and ``layers.{i}.bias`` ([out])."""

    def build(self, weights: Mapping[str, np.ndarray], config: Mapping[str, object]) -> ForwardPass:
        """Check that the layers chain and bind them to a float32 forward pass."""
        settings = MlpConfig.parse(NAME, config)
        try:
            layers = _layers(weights)
        except RuntimeFailure as exc:
            advice = _pytorch_advice(weights, config)
            if advice is None:
                raise
            raise RuntimeFailure(f"{exc}; {advice}") from exc
        return bind_dense_layers(layers, settings)


NUMPY_MLP = NumpyMlp()


def _layers(weights: Mapping[str, np.ndarray]) -> tuple[DenseLayer, ...]:
    found: dict[int, dict[str, np.ndarray]] = {}
    for name, tensor in weights.items():
        match = _LAYER_TENSOR.fullmatch(name)
        if match is None:
            raise RuntimeFailure(
                f"{NAME}: unexpected tensor '{name}'; expected only "
                "'layers.{i}.weight' and 'layers.{i}.bias'"
            )
        found.setdefault(int(match[1]), {})[match[2]] = tensor
    if not found:
        raise RuntimeFailure(f"{NAME}: the file holds no 'layers.{{i}}.weight' tensors")
    if sorted(found) != list(range(len(found))):
        raise RuntimeFailure(
            f"{NAME}: layer indices {sorted(found)} must run 0, 1, 2, ... without gaps"
        )
    layers: list[DenseLayer] = []
    for index in range(len(found)):
        layer = _layer(index, found[index])
        if layers and layers[-1].weight.shape[1] != layer.weight.shape[0]:
            raise RuntimeFailure(
                f"{NAME}: layer {index} takes {layer.weight.shape[0]} inputs but layer "
                f"{index - 1} gives {layers[-1].weight.shape[1]} outputs"
            )
        layers.append(layer)
    return tuple(layers)


def _layer(index: int, tensors: Mapping[str, np.ndarray]) -> DenseLayer:
    missing = sorted({"weight", "bias"} - set(tensors))
    if missing:
        raise RuntimeFailure(f"{NAME}: layer {index} has no {' or '.join(missing)}")
    weight, bias = tensors["weight"], tensors["bias"]
    for part, tensor in (("weight", weight), ("bias", bias)):
        check_float(NAME, f"layers.{index}.{part}", tensor)
    if weight.ndim != 2 or bias.ndim != 1 or weight.shape[1] != bias.shape[0]:
        raise RuntimeFailure(
            f"{NAME}: layer {index} has weight {list(weight.shape)} and bias "
            f"{list(bias.shape)}; expected [in, out] and [out]"
        )
    if 0 in weight.shape:
        raise RuntimeFailure(f"{NAME}: layer {index} has an empty weight {list(weight.shape)}")
    # float32 weights stay zero-copy views of the file; other widths are converted once.
    return DenseLayer(as_float32(weight), as_float32(bias))


def _pytorch_advice(weights: Mapping[str, np.ndarray], config: Mapping[str, object]) -> str | None:
    """What to do with weights numpy-mlp refused, when they look like a PyTorch state_dict."""
    try:
        layers = read_linear_layers(weights)
    except RuntimeFailure as exc:
        # Names numpy-mlp does not know but PyTorch writes (a BatchNorm's '1.running_mean'):
        # torch-mlp's own refusal says what to do instead.
        if any(
            _MODULE_TENSOR.fullmatch(name) and not _LAYER_TENSOR.fullmatch(name) for name in weights
        ):
            return (
                "the names look like a PyTorch state_dict, but torch-mlp, which reads those, "
                f"refuses it too ({exc})"
            )
        return None
    widths = [layers[0].weight.shape[0], *(layer.weight.shape[1] for layer in layers)]
    chain = " -> ".join(str(width) for width in widths)
    forward_config = f" --forward-config '{json.dumps(dict(config))}'" if config else ""
    return (
        "it looks like a PyTorch state_dict (nn.Linear weights [out, in]), which torch-mlp "
        f"reads as it is, as nn.Linear layers {chain}: publish the same file with "
        f'--forward torch-mlp{forward_config} (forward="torch-mlp" in keel.publish)'
    )
