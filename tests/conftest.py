"""Fixtures shared across the suite: real models trained on scikit-learn's bundled data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from keel.examples import breast_cancer
from keel.registry import Registry
from keel.signature import to_arrays
from postgres_server import postgres_server, postgres_url  # noqa: F401 - shared fixtures
from support import OnnxModel, run_keel, training_repo

# A server a test starts listens for gRPC on a port the test chose (keel_server picks a
# free one) or not at all: never on the default 8081, which two servers of one test, or a
# developer's own server, would contend for.
os.environ.setdefault("KEEL_SERVER__GRPC_PORT", "0")


@pytest.fixture(scope="session")
def breast_cancer_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    """Logistic regression on the breast-cancer data, exported to ONNX."""
    frame, target, classes = breast_cancer.load_frame()
    train_frame, valid_frame, y_train, _ = breast_cancer.split(frame, target)
    signature = breast_cancer.build_signature(frame, classes)
    model = breast_cancer.train(
        breast_cancer.VARIANTS[0], to_arrays(train_frame, signature)["input"], y_train
    )
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    breast_cancer.export_onnx(model, len(signature.features), path)
    return OnnxModel(path, signature, valid_frame)


@pytest.fixture(scope="session")
def demo_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding the example models (``keel demo``), published once for the session.

    Shared read-only: a test that changes a registry copies it first.
    """
    registry = tmp_path_factory.mktemp("demo") / "registry"
    result = run_keel("demo", "--no-serve", "--registry", str(registry))
    assert result.returncode == 0, result.stdout + result.stderr
    return registry


@pytest.fixture
def demo_copy(demo_registry: Path, tmp_path: Path) -> Path:
    """A private copy of the demo registry, for a test that changes it."""
    copy = tmp_path / "registry"
    shutil.copytree(demo_registry, copy)
    return copy


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with one commit, standing in for the training code's repo."""
    return training_repo(tmp_path / "training-code")
