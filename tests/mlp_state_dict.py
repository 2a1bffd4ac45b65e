"""A real MLP, trained by scikit-learn, written out as a PyTorch state_dict would be.

torch is not a dependency of keel, so the tests train ``MLPClassifier`` instead and
write its ``coefs_`` / ``intercepts_`` as ``nn.Linear`` holds them. The file that
``safetensors.numpy.save_file`` then writes is, byte for byte, the one
``safetensors.torch.save_file(model.state_dict(), path)`` writes for the same float32
weights: both hand the same names, dtypes, shapes and bytes to the same serializer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier

from keel.signature import Feature, Output, Signature

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_SPECIES = ("setosa", "versicolor", "virginica")


@dataclass(frozen=True)
class TrainedMlp:
    """An MLP classifier trained on the iris data, and that data as float32."""

    classifier: MLPClassifier
    features: np.ndarray
    activation: str

    def records(self) -> list[dict[str, float]]:
        """The features as JSON records, named as :func:`iris_signature` names them."""
        return [
            dict(zip(IRIS_FEATURES, (float(v) for v in row), strict=True)) for row in self.features
        ]


@cache
def train_iris_mlp(activation: str = "relu") -> TrainedMlp:
    """Two hidden layers (16, 8) on the iris data; converges in under a second."""
    features, labels = load_iris(return_X_y=True)
    # float32 in, so scikit-learn trains and predicts in float32, as PyTorch would.
    features = features.astype(np.float32)
    classifier = MLPClassifier(
        hidden_layer_sizes=(16, 8), activation=activation, max_iter=2000, random_state=0
    )
    return TrainedMlp(classifier.fit(features, labels), features, activation)


def state_dict(
    classifier: MLPClassifier, prefix: str = "", step: int = 2, *, bias: bool = True
) -> dict[str, np.ndarray]:
    """The Linear layers' tensors as PyTorch names and shapes them.

    ``step`` 2 numbers them as an ``nn.Sequential(Linear, ReLU, Linear, ...)`` does (the
    activations hold no weights, so 0, 2, 4); ``step`` 1 as an ``nn.ModuleList`` of
    Linear layers does. Weights are ``[out, in]``; ``bias=False`` leaves the biases out,
    as ``nn.Linear(bias=False)`` saves none.
    """
    tensors: dict[str, np.ndarray] = {}
    for index, (coef, intercept) in enumerate(
        zip(classifier.coefs_, classifier.intercepts_, strict=True)
    ):
        tensors[f"{prefix}{step * index}.weight"] = np.ascontiguousarray(coef.T, np.float32)
        if bias:
            tensors[f"{prefix}{step * index}.bias"] = np.asarray(intercept, np.float32)
    return tensors


def save_state_dict(tensors: dict[str, np.ndarray], path: Path) -> Path:
    """Write ``tensors`` as safetensors.torch.save_file(model.state_dict(), path) does."""
    save_file(tensors, str(path))
    return path


def iris_signature() -> Signature:
    """Four measurements in cm; the species' probabilities and the label out."""
    return Signature(
        features=[
            Feature(name=name, dtype="float", minimum=0, unit="cm") for name in IRIS_FEATURES
        ],
        outputs=[
            Output(
                name="probabilities",
                dtype="float32",
                shape=[None, 3],
                kind="probability",
                labels=list(IRIS_SPECIES),
            ),
            Output(
                name="label", dtype="int64", shape=[None], kind="label", labels=list(IRIS_SPECIES)
            ),
        ],
    )
