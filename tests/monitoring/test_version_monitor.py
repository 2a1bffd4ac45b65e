"""A served version's monitor: model calls queued from any thread, observed in pieces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from monitoring_support import Columns, held_out_tensors, held_out_traffic

from keel.monitoring.monitor import VersionMonitor
from keel.monitoring.window import DriftWindow
from keel.registry import ModelMetadata
from keel.settings import DriftSettings
from support import OnnxModel

SETTINGS = DriftSettings(window_rows=1000, block_rows=100, min_rows=100)


def _fed(metadata: ModelMetadata, inputs: Columns, outputs: Columns) -> VersionMonitor:
    """A monitor that was handed every held-out row as a one-row model call."""
    monitor = VersionMonitor(DriftWindow.for_model(metadata, SETTINGS), metadata.signature)
    monitor.enabled = True
    rows = len(next(iter(inputs.values())))
    for row in range(rows):
        monitor.record(
            {name: array[row : row + 1] for name, array in inputs.items()},
            {name: array[row : row + 1] for name, array in outputs.items()},
        )
    return monitor


def test_observing_in_pieces_counts_what_one_flush_does(
    breast_cancer_model: OnnxModel, tmp_path: Path
) -> None:
    metadata = held_out_traffic(breast_cancer_model, tmp_path).metadata
    inputs, outputs = held_out_tensors(breast_cancer_model)
    rows = len(next(iter(inputs.values())))
    whole, pieces = _fed(metadata, inputs, outputs), _fed(metadata, inputs, outputs)

    assert whole.flush() == rows
    observed = []
    while pieces.pending_batches:
        observed.append(pieces.flush(50))

    assert observed == [50] * (rows // 50) + [rows % 50]
    assert pieces.flush(50) == 0
    np.testing.assert_array_equal(whole.window.lifetime_counts(), pieces.window.lifetime_counts())
    assert whole.window.rows == pieces.window.rows == rows
    assert [c.status for c in whole.snapshot().features] == [
        c.status for c in pieces.snapshot().features
    ]
