"""Fixtures shared by the runtime tests: a real scikit-learn ONNX model and file writers."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from skl2onnx import to_onnx
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

RawSafetensorsWriter = Callable[..., Path]


@pytest.fixture(scope="session")
def breast_cancer() -> tuple[np.ndarray, Pipeline]:
    """Features of the breast cancer data set and a logistic regression trained on them."""
    features, labels = load_breast_cancer(return_X_y=True)
    # Scaling first lets the solver converge in milliseconds instead of seconds.
    classifier = make_pipeline(StandardScaler(), LogisticRegression())
    return features, classifier.fit(features, labels)


@pytest.fixture(scope="session")
def breast_cancer_onnx(
    breast_cancer: tuple[np.ndarray, Pipeline], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The logistic regression exported by skl2onnx with plain tensor outputs (no ZipMap)."""
    features, classifier = breast_cancer
    model = to_onnx(
        classifier,
        features[:1].astype(np.float32),
        options={LogisticRegression: {"zipmap": False}},
        target_opset=17,
    )
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def raw_safetensors(tmp_path: Path) -> RawSafetensorsWriter:
    """Write a safetensors file byte by byte, so tests can make its header lie."""

    def write(
        header: object,
        data: bytes = b"",
        *,
        name: str = "model.safetensors",
        length: int | None = None,
    ) -> Path:
        encoded = header if isinstance(header, bytes) else json.dumps(header).encode()
        declared = len(encoded) if length is None else length
        path = tmp_path / name
        path.write_bytes(struct.pack("<Q", declared) + encoded + data)
        return path

    return write
