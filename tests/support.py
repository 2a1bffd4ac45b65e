"""Helpers shared by test modules: run the real CLI, drive git, describe a trained model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keel.signature import Signature

GIT = shutil.which("git") or "git"


@dataclass(frozen=True)
class OnnxModel:
    """A real ONNX classifier with the data it was trained and validated on."""

    path: Path
    signature: Signature
    valid_frame: Any


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [GIT, "-c", "user.name=keel", "-c", "user.email=keel@example.invalid", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def training_repo(folder: Path) -> Path:
    """A real git repository with one commit at ``folder``, as the training code's is."""
    folder.mkdir()
    (folder / "train.py").write_text("print('train')\n")
    git(folder, "init", "-q")
    git(folder, "add", "train.py")
    git(folder, "commit", "-q", "-m", "training code")
    return folder


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


def keel_at(registry: Path, *args: str) -> tuple[int, str, str]:
    """Run ``keel ARGS --registry REGISTRY``: exit code, stdout, stderr."""
    result = run_keel(*args, "--registry", str(registry))
    return result.returncode, result.stdout, result.stderr
