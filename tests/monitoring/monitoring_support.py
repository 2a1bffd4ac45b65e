"""Real traffic for drift tests: the breast-cancer model, published with its training split
as reference, and its held-out split as observed columns."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from keel.examples import breast_cancer
from keel.monitoring.columns import feature_columns, output_columns
from keel.publishing import publish
from keel.registry import ModelMetadata
from keel.runtimes import load_runtime
from keel.signature import to_arrays
from support import OnnxModel

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Traffic:
    """A published model version and rows of its traffic as observed columns."""

    metadata: ModelMetadata
    registry: Path
    features: Columns
    predictions: Columns

    @property
    def rows(self) -> int:
        return len(next(iter(self.features.values())))

    def take(self, index: np.ndarray) -> Traffic:
        """The rows at ``index`` (bootstrap resamples repeat rows)."""
        return replace(
            self,
            features={n: c[index] for n, c in self.features.items()},
            predictions={n: c[index] for n, c in self.predictions.items()},
        )

    def bootstrap(self, rows: int, seed: int) -> Traffic:
        return self.take(np.random.default_rng(seed).integers(0, self.rows, size=rows))

    def with_feature(self, name: str, values: np.ndarray) -> Traffic:
        return replace(self, features={**self.features, name: values})

    def with_predictions(self, **columns: Any) -> Traffic:
        return replace(self, predictions={**self.predictions, **columns})

    def batches(self, size: int = 64) -> list[tuple[Columns, Columns]]:
        """The rows in order, as (features, predictions) batches for ``observe``."""
        return [
            (
                {n: c[start : start + size] for n, c in self.features.items()},
                {n: c[start : start + size] for n, c in self.predictions.items()},
            )
            for start in range(0, self.rows, size)
        ]


def held_out_traffic(model: OnnxModel, scratch: Path) -> Traffic:
    """Publish ``model`` with the training split as reference; observe the held-out split.

    ``keel.publish`` computes the reference statistics exactly as it does for any
    model; the held-out rows go through ``to_arrays`` and the model, as requests do.
    """
    from sklearn.model_selection import train_test_split

    frame, target, _ = breast_cancer.load_frame()
    train_frame, valid_frame, _, _ = train_test_split(
        frame, target, test_size=0.25, random_state=0, stratify=target
    )
    assert valid_frame.equals(model.valid_frame)
    metadata = publish(
        model.path,
        name=breast_cancer.MODEL_NAME,
        signature=model.signature,
        registry=scratch / "registry",
        reference=train_frame,
        source_dir=scratch,
        allow_untracked=True,
    )
    arrays, outputs = held_out_tensors(model)
    return Traffic(
        metadata,
        scratch / "registry",
        feature_columns(arrays, model.signature),
        output_columns(outputs, model.signature),
    )


def held_out_tensors(model: OnnxModel) -> tuple[Columns, Columns]:
    """The held-out split as the model's input tensors, and the model's outputs for them."""
    runtime = load_runtime(model.path)
    try:
        arrays = to_arrays(model.valid_frame, model.signature)
        return arrays, runtime.predict(arrays)
    finally:
        runtime.close()
