"""Fixtures shared across the suite: real models trained on scikit-learn's bundled data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keel.examples import breast_cancer
from keel.registry import Registry
from keel.signature import Signature, to_arrays

GIT = shutil.which("git") or "git"


@dataclass(frozen=True)
class OnnxModel:
    """A real ONNX classifier with the data it was trained and validated on."""

    path: Path
    signature: Signature
    valid_frame: Any


@pytest.fixture(scope="session")
def breast_cancer_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    """Logistic regression on the breast-cancer data, exported to ONNX."""
    from sklearn.model_selection import train_test_split

    frame, target, classes = breast_cancer.load_frame()
    train_frame, valid_frame, y_train, _ = train_test_split(
        frame, target, test_size=0.25, random_state=0, stratify=target
    )
    signature = breast_cancer.build_signature(frame, classes)
    model = breast_cancer.train(
        breast_cancer.VARIANTS[0], to_arrays(train_frame, signature)["input"], y_train
    )
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    breast_cancer.export_onnx(model, len(signature.features), path)
    return OnnxModel(path, signature, valid_frame)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry")


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git repository with one commit, standing in for the training code's repo."""
    repo = tmp_path / "training-code"
    repo.mkdir()
    (repo / "train.py").write_text("print('train')\n")
    git(repo, "init", "-q")
    git(repo, "add", "train.py")
    git(repo, "commit", "-q", "-m", "training code")
    return repo


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [GIT, "-c", "user.name=keel", "-c", "user.email=keel@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def run_keel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``keel`` command line in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "keel", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )
