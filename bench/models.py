"""The models under test: a fresh registry with keel's examples, and where their files are."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from keel.registry import ModelMetadata, Registry

SMALL = "breast-cancer@production"
"""Logistic regression on 30 features: the model costs microseconds, serving is everything."""
SMALL_CANDIDATE = "breast-cancer@candidate"
"""Gradient boosting, 100 trees of depth 2: still microseconds."""
DIGITS = "digits-mlp@production"
"""A small numpy-mlp on 64 integer pixels (0-16): every feature has a type and bounds to check."""
WIDE = "digits-wide-mlp@production"
"""``keel.examples.digits_wide_mlp``: compute-bound, a millisecond or more per single-row call."""


@dataclass(frozen=True)
class ModelFiles:
    """One published version: its metadata and the artifact file on disk."""

    ref: str
    metadata: ModelMetadata
    path: Path

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def build_registry(directory: Path, log: Path) -> float:
    """Publish the example models into ``directory``; returns the seconds it took."""
    started = time.perf_counter()
    with log.open("ab") as out:
        for argv in (
            ["-m", "keel", "demo", "--no-serve", "--registry", str(directory)],
            ["-m", "keel.examples.digits_wide_mlp", "--registry", str(directory)],
        ):
            subprocess.run(
                [sys.executable, *argv], stdout=out, stderr=subprocess.STDOUT, check=True
            )
    return time.perf_counter() - started


def model_files(registry: Path, ref: str) -> ModelFiles:
    store = Registry(str(registry))
    metadata = store.resolve(ref)
    folder = store.fetch(metadata)
    return ModelFiles(ref, metadata, folder / metadata.artifact.path)
