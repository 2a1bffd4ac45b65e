"""The "torch-mlp" forward: a PyTorch MLP's ``state_dict`` as safetensors.torch.save_file writes it.

``safetensors.torch.save_file(model.state_dict(), path)`` on an ``nn.Sequential`` of
``nn.Linear`` layers and activations names its tensors ``{i}.weight`` and ``{i}.bias``,
``i`` being each Linear's position in the Sequential; activations hold no weights, so
the indices skip them (0, 2, 4, ...). A module holding ``self.layers = nn.Sequential(...)``
or an ``nn.ModuleList`` adds the attribute path as a prefix (``layers.0.weight``). The
weights are ``[out, in]``, nn.Linear's own layout, and a Linear made with
``bias=False`` saves no bias. This forward reads exactly that, and refuses anything
else naming the tensor, rather than guessing.
"""

from __future__ import annotations

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

NAME = "torch-mlp"
# The prefix is everything before the last two parts: a module path such as "layers."
# or "net.body.", or nothing for a bare nn.Sequential.
_LINEAR_TENSOR = re.compile(r"(?P<prefix>(?:.+\.)?)(?P<index>0|[1-9][0-9]*)\.(?P<part>weight|bias)")
_LINEAR_ONLY = (
    "torch-mlp runs only nn.Linear layers with activations between them "
    "('{i}.weight' [out, in] and '{i}.bias' [out], under one common prefix); export any "
    "other model to ONNX with torch.onnx.export and publish the .onnx file instead"
)


class TorchMlp:
    """nn.Linear layers named ``{prefix}{i}.weight`` ([out, in]) and ``{prefix}{i}.bias``."""

    def build(self, weights: Mapping[str, np.ndarray], config: Mapping[str, object]) -> ForwardPass:
        """Check that the Linear layers chain and bind them to a float32 forward pass."""
        settings = MlpConfig.parse(NAME, config)
        return bind_dense_layers(read_linear_layers(weights), settings)


TORCH_MLP = TorchMlp()


def read_linear_layers(weights: Mapping[str, np.ndarray]) -> tuple[DenseLayer, ...]:
    """The nn.Linear layers of a state_dict, in order; RuntimeFailure names what is wrong."""
    prefix, found = _group_by_layer(weights)
    layers: list[DenseLayer] = []
    previous: tuple[str, np.ndarray] | None = None
    for index in sorted(found):
        name = f"{prefix}{index}.weight"
        weight, bias = _linear(prefix, index, found[index])
        if previous is not None and previous[1].shape[0] != weight.shape[1]:
            before, shape = previous[0], list(previous[1].shape)
            raise RuntimeFailure(
                f"{NAME}: '{before}' {shape} and '{name}' {list(weight.shape)} do not chain: "
                f"the first gives {shape[0]} outputs but the second takes {weight.shape[1]} "
                "inputs (nn.Linear weights are [out, in], so each layer's in must equal the "
                "previous layer's out)"
            )
        # weight.T is a view: float32 weights stay zero-copy views of the file.
        layers.append(DenseLayer(as_float32(weight).T, bias))
        previous = (name, weight)
    return tuple(layers)


def _group_by_layer(
    weights: Mapping[str, np.ndarray],
) -> tuple[str, dict[int, dict[str, np.ndarray]]]:
    # Every name is checked before any shape, so a BatchNorm is refused by its
    # running_mean, not by its 1-D weight.
    first_with_prefix: dict[str, str] = {}
    found: dict[int, dict[str, np.ndarray]] = {}
    for name, tensor in weights.items():
        match = _LINEAR_TENSOR.fullmatch(name)
        if match is None:
            raise RuntimeFailure(f"{NAME}: unexpected tensor '{name}'; {_LINEAR_ONLY}")
        first_with_prefix.setdefault(match["prefix"], name)
        found.setdefault(int(match["index"]), {})[match["part"]] = tensor
    if len(first_with_prefix) > 1:
        (one, one_name), (other, other_name) = list(first_with_prefix.items())[:2]
        raise RuntimeFailure(
            f"{NAME}: tensors '{one_name}' and '{other_name}' have different prefixes "
            f"('{one}' and '{other}'); torch-mlp reads the state_dict of one nn.Sequential "
            "or nn.ModuleList of nn.Linear layers, whose tensors share one prefix; export any "
            "other model to ONNX with torch.onnx.export and publish the .onnx file instead"
        )
    if not found:
        raise RuntimeFailure(f"{NAME}: the file holds no '{{i}}.weight' tensors")
    (prefix,) = first_with_prefix
    return prefix, found


def _linear(
    prefix: str, index: int, tensors: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One nn.Linear's weight as stored ([out, in]) and its bias as float32 ([out])."""
    weight_name, bias_name = f"{prefix}{index}.weight", f"{prefix}{index}.bias"
    weight = tensors.get("weight")
    if weight is None:
        raise RuntimeFailure(f"{NAME}: '{bias_name}' has no weight '{weight_name}' beside it")
    check_float(NAME, f"'{weight_name}'", weight)
    if weight.ndim != 2:
        raise RuntimeFailure(
            f"{NAME}: '{weight_name}' has shape {list(weight.shape)}, but an nn.Linear "
            f"weight is [out, in]; {_LINEAR_ONLY}"
        )
    if 0 in weight.shape:
        raise RuntimeFailure(f"{NAME}: '{weight_name}' is an empty weight {list(weight.shape)}")
    outputs = weight.shape[0]
    bias = tensors.get("bias")
    if bias is None:
        # nn.Linear(bias=False) saves no bias: it adds nothing.
        return weight, np.zeros(outputs, np.float32)
    check_float(NAME, f"'{bias_name}'", bias)
    if bias.shape != (outputs,):
        raise RuntimeFailure(
            f"{NAME}: '{bias_name}' has shape {list(bias.shape)} but '{weight_name}' "
            f"{list(weight.shape)} gives {outputs} outputs; expected [{outputs}]"
        )
    return weight, as_float32(bias)
