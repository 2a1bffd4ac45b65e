"""Prediction records for the log-store tests, and how to compare them after a round trip."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from keel.logstore import CandidateStatus, PredictionRecord, input_digest
from keel.logstore.records import Tensors

CLASSES = np.array(["setosa", "versicolor", "virginica"], dtype=object)


def make_record(
    index: int,
    *,
    model: str = "iris",
    at: float | None = None,
    candidate_version: str | None = "v2",
    rows: int = 2,
    request_id: str | None = None,
) -> PredictionRecord:
    """Record ``index``: float, int and string tensors; a candidate answer when it has a version."""
    generator = np.random.default_rng(index)
    features = generator.normal(size=(rows, 4)).astype(np.float32)
    probabilities = generator.dirichlet(np.ones(3), size=rows)
    labels = probabilities.argmax(axis=1)
    candidate_output: Tensors | None = None
    if candidate_version is not None:
        candidate_output = {"label": CLASSES[labels], "score": probabilities.max(axis=1)}
    return PredictionRecord(
        at=1_700_000_000.0 + index if at is None else at,
        request_id=request_id or f"request-{index}",
        model=model,
        primary_version="v1",
        candidate_version=candidate_version,
        rows=rows,
        status=CandidateStatus.OK if candidate_version else CandidateStatus.UNMIRRORED,
        primary_ms=1.25 + index,
        primary_output={"probabilities": probabilities, "label": labels.astype(np.int64)},
        inputs={"features": features, "species": np.array(["a", "bc"] * rows)[:rows]},
        candidate_ms=None if candidate_version is None else 2.5,
        candidate_output=candidate_output,
    )


def assert_same_tensors(read: Tensors | None, written: Tensors | None) -> None:
    if written is None:
        assert read is None
        return
    assert read is not None
    assert read.keys() == written.keys()
    for name, array in written.items():
        assert read[name].dtype == array.dtype, name
        assert read[name].shape == array.shape, name
        np.testing.assert_array_equal(read[name], array, err_msg=name)


def assert_same_record(
    read: PredictionRecord, written: PredictionRecord, inputs: bool = True
) -> None:
    """``read`` is ``written`` back from a store; inputs compared only if they were stored."""
    for field in (
        "at",
        "request_id",
        "model",
        "primary_version",
        "candidate_version",
        "rows",
        "status",
        "primary_ms",
        "candidate_ms",
        "error",
    ):
        assert getattr(read, field) == getattr(written, field), field
    assert_same_tensors(read.primary_output, written.primary_output)
    assert_same_tensors(read.candidate_output, written.candidate_output)
    assert_same_tensors(read.inputs, written.inputs if inputs else None)
    expected_hash = written.input_hash or (written.inputs and input_digest(written.inputs))
    assert read.input_hash == expected_hash


async def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> None:
    """Poll ``condition`` on the loop (so the writer's flusher runs meanwhile) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0.005)
