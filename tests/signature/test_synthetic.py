"""Tests for keel.signature.synthetic: generated records a signature accepts."""

from __future__ import annotations

import json

from keel.signature import Feature, ModelInput, Output, Signature, synthetic_records


def test_synthetic_records_are_valid_deterministic_and_json_safe(credit: Signature) -> None:
    records = synthetic_records(credit, 20)
    assert len(records) == 20
    assert credit.validate_records(records) == records
    assert synthetic_records(credit, 20) == records
    assert json.loads(json.dumps(records, allow_nan=False)) == records


def test_synthetic_records_exercise_missing_values(credit: Signature) -> None:
    records = synthetic_records(credit, 10)
    assert any(r["income"] is None for r in records)
    assert all(r["age"] is not None for r in records)


def test_synthetic_records_respect_one_sided_and_extreme_bounds() -> None:
    features = [
        Feature(name="huge", dtype="float", minimum=1e300),
        Feature(name="wide", dtype="float", minimum=-1e308, maximum=1e308),
        Feature(name="top", dtype="int", maximum=-(2**63) + 3),
    ]
    inputs = [
        ModelInput(name="wide64", dtype="float64", features=["huge"]),
        ModelInput(name="narrow32", dtype="float32", features=["wide", "top"]),
    ]
    output = Output(name="y", dtype="float32", shape=[None], kind="score")
    signature = Signature(features=features, outputs=[output], inputs=inputs)
    records = synthetic_records(signature, 50)
    assert signature.validate_records(records) == records
    assert all(abs(r["wide"]) <= 3.5e38 for r in records)  # type: ignore[arg-type]
