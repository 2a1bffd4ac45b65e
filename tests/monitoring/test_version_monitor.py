"""A served version's monitor: model calls queued from any thread, observed in pieces."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from monitoring_support import Columns, held_out_tensors, held_out_traffic

from keel.monitoring.monitor import FLUSH_PIECE_BATCHES, FLUSH_PIECE_ROWS, VersionMonitor
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


def _pieces_observed(monitor: VersionMonitor) -> list[int]:
    """The rows of each observation the monitor's window is handed from now on."""
    pieces: list[int] = []
    observe = monitor.window.observe

    def counted(features: Columns, predictions: Columns) -> None:
        pieces.append(len(next(iter(features.values()))))
        observe(features, predictions)

    monitor.window.observe = counted  # type: ignore[method-assign]
    return pieces


def test_a_drain_observes_everything_queued_in_pieces(
    breast_cancer_model: OnnxModel, tmp_path: Path
) -> None:
    metadata = held_out_traffic(breast_cancer_model, tmp_path).metadata
    inputs, outputs = held_out_tensors(breast_cancer_model)
    # Three times the held-out split: more calls than one piece holds.
    rows = 3 * len(next(iter(inputs.values())))
    monitor = _fed(metadata, inputs, outputs, times=3)
    pieces = _pieces_observed(monitor)

    asyncio.run(monitor.drain())

    assert rows > FLUSH_PIECE_BATCHES
    whole, rest = divmod(rows, FLUSH_PIECE_BATCHES)
    assert pieces == [FLUSH_PIECE_BATCHES] * whole + [rest] * bool(rest)
    assert monitor.window.rows == rows
    assert monitor.flush() == 0


def test_pieces_hold_at_most_the_row_limit_unless_one_call_is_larger(
    breast_cancer_model: OnnxModel, tmp_path: Path
) -> None:
    metadata = held_out_traffic(breast_cancer_model, tmp_path).metadata
    inputs, outputs = held_out_tensors(breast_cancer_model)
    monitor = VersionMonitor(DriftWindow.for_model(metadata, SETTINGS), metadata.signature)
    monitor.enabled = True
    call = 100
    sizes = [call] * 25 + [FLUSH_PIECE_ROWS + 1] + [call] * 3
    for size in sizes:
        at = np.arange(size) % len(next(iter(inputs.values())))
        monitor.record(
            {name: array[at] for name, array in inputs.items()},
            {name: array[at] for name, array in outputs.items()},
        )
    pieces = _pieces_observed(monitor)

    asyncio.run(monitor.drain())

    per_piece = FLUSH_PIECE_ROWS // call * call
    assert pieces == [per_piece, per_piece, 500, FLUSH_PIECE_ROWS + 1, 300]
    assert monitor.flush() == 0
