"""A served version's monitor: model calls queued from any thread, observed in pieces."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from monitoring_support import Columns, held_out_tensors, held_out_traffic

from keel.monitoring.monitor import FLUSH_PIECE_BATCHES, VersionMonitor
from keel.monitoring.window import DriftWindow
from keel.registry import ModelMetadata
from keel.settings import DriftSettings
from support import OnnxModel

SETTINGS = DriftSettings(window_rows=1000, block_rows=100, min_rows=100)


def _fed(
    metadata: ModelMetadata, inputs: Columns, outputs: Columns, times: int = 1
) -> VersionMonitor:
    """A monitor that was handed every held-out row ``times`` over, each a one-row model call."""
    monitor = VersionMonitor(DriftWindow.for_model(metadata, SETTINGS), metadata.signature)
    monitor.enabled = True
    rows = len(next(iter(inputs.values())))
    for row in [*range(rows)] * times:
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
    while taken := pieces.flush(50):
        observed.append(taken)

    assert observed == [50] * (rows // 50) + [rows % 50]
    assert pieces.flush(50) == 0
    np.testing.assert_array_equal(whole.window.lifetime_counts(), pieces.window.lifetime_counts())
    assert whole.window.rows == pieces.window.rows == rows
    assert [c.status for c in whole.snapshot().features] == [
        c.status for c in pieces.snapshot().features
    ]


def test_a_drain_observes_everything_queued_in_pieces(
    breast_cancer_model: OnnxModel, tmp_path: Path
) -> None:
    metadata = held_out_traffic(breast_cancer_model, tmp_path).metadata
    inputs, outputs = held_out_tensors(breast_cancer_model)
    # Three times the held-out split: more calls than one piece holds.
    rows = 3 * len(next(iter(inputs.values())))
    monitor = _fed(metadata, inputs, outputs, times=3)
    pieces = []
    flush = monitor.flush

    def counted(at_most: int | None = None) -> int:
        pieces.append(at_most)
        return flush(at_most)

    monitor.flush = counted  # type: ignore[method-assign]
    asyncio.run(monitor.drain())

    assert rows > FLUSH_PIECE_BATCHES
    assert pieces == [FLUSH_PIECE_BATCHES] * -(-rows // FLUSH_PIECE_BATCHES)
    assert monitor.window.rows == rows
    assert flush() == 0
