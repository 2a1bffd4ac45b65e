"""Model inputs and outputs read back into the columns a drift window observes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from keel.examples import breast_cancer
from keel.monitoring.columns import MISSING_CODE, feature_columns, output_columns
from keel.monitoring.window import DriftWindow
from keel.publishing import feature_stats
from keel.reference import ReferenceStats
from keel.signature import Feature, ModelInput, Output, Signature, to_arrays
from support import OnnxModel

SCORE = Output(name="score", dtype="float32", shape=[None], kind="score")
LEVELS = ["red", "green", "blue", "unknown"]


def _mixed_signature() -> Signature:
    features = [
        Feature(name="ratio", dtype="float", nullable=True, missing="indicator",
                missing_indicator=-1.0),
        Feature(name="count", dtype="int", nullable=True, missing="indicator",
                missing_indicator=-1),
        Feature(name="flag", dtype="bool"),
        Feature(name="colour", dtype="categorical", levels=LEVELS, nullable=True,
                missing="indicator", missing_indicator="unknown"),
        Feature(name="size", dtype="categorical", levels=["s", "m", "l"], encoding="index"),
        Feature(name="shade", dtype="categorical", levels=["dark", "light"]),
        Feature(name="city", dtype="string", nullable=True, missing="indicator",
                missing_indicator=""),
    ]  # fmt: skip
    inputs = [
        ModelInput(name="numbers", dtype="float32", features=["ratio", "flag", "colour"]),
        ModelInput(name="codes", dtype="int64", features=["count", "size"]),
        ModelInput(name="text", dtype="string", features=["shade", "city"]),
    ]
    return Signature(features=features, outputs=[SCORE], inputs=inputs)


def _record(rng: np.random.Generator) -> dict[str, Any]:
    return {
        "ratio": float(rng.normal(5, 1)),
        "count": int(rng.integers(0, 20)),
        "flag": bool(rng.random() < 0.3),
        "colour": str(rng.choice(LEVELS[:3], p=[0.5, 0.3, 0.2])),
        "size": str(rng.choice(["s", "m", "l"])),
        "shade": str(rng.choice(["dark", "light"])),
        "city": str(rng.choice(["paris", "lyon", "nice"])),
    }


def test_every_feature_dtype_comes_back_with_its_nulls_marked() -> None:
    signature = _mixed_signature()
    records = [
        {"ratio": 0.5, "count": 3, "flag": True, "colour": "blue", "size": "l",
         "shade": "light", "city": "paris"},
        {"ratio": None, "count": None, "flag": False, "colour": None, "size": "s",
         "shade": "dark", "city": None},
    ]  # fmt: skip
    columns = feature_columns(to_arrays(records, signature), signature)
    assert columns["ratio"][0] == 0.5
    assert math.isnan(columns["ratio"][1])
    assert columns["count"][0] == 3
    assert math.isnan(columns["count"][1])
    assert columns["flag"].tolist() == [1, 0]
    assert columns["colour"].tolist() == [LEVELS.index("blue"), MISSING_CODE]
    assert columns["size"].tolist() == [2, 0]
    assert columns["shade"].tolist() == [1, 0]
    assert columns["city"].tolist() == ["paris", None]


def test_records_and_dataframes_are_observed_alike(breast_cancer_model: OnnxModel) -> None:
    frame, signature = breast_cancer_model.valid_frame, breast_cancer_model.signature
    from_frame = feature_columns(to_arrays(frame, signature), signature)
    records = frame.to_dict("records")
    from_records = feature_columns(to_arrays(records, signature), signature)
    assert list(from_frame) == list(signature.feature_names)
    for name in signature.feature_names:
        np.testing.assert_array_equal(from_frame[name], from_records[name])
        # The tensor is float32: the observed column is the frame rounded to float32.
        expected = frame[name].to_numpy().astype(np.float32).astype(np.float64)
        np.testing.assert_array_equal(from_frame[name], expected)


def test_outputs_split_into_named_prediction_columns() -> None:
    _, _, classes = breast_cancer.load_frame()
    signature = breast_cancer.build_signature(breast_cancer.load_frame()[0], classes)
    outputs = {
        "label": np.array([0, 1]),
        "probabilities": np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32),
        "undeclared": np.zeros(2),
    }
    columns = output_columns(outputs, signature)
    assert list(columns) == ["label", "probabilities[malignant]", "probabilities[benign]"]
    assert columns["probabilities[benign]"].tolist() == pytest.approx([0.1, 0.8])


def _reference(signature: Signature, records: list[dict[str, Any]]) -> ReferenceStats:
    return ReferenceStats(
        rows=len(records), features=feature_stats(signature, records), predictions={}
    )


def _observe(window: DriftWindow, signature: Signature, records: list[dict[str, Any]]) -> None:
    window.observe(feature_columns(to_arrays(records, signature), signature), {})


def test_levels_and_text_are_judged_by_chi_square_and_shifts_alert() -> None:
    signature = _mixed_signature()
    rng = np.random.default_rng(0)
    reference = _reference(signature, [_record(rng) for _ in range(2000)])
    same = DriftWindow.for_signature(signature, reference)
    _observe(same, signature, [_record(rng) for _ in range(1000)])
    snapshot = same.snapshot()
    assert {c.name: c.status for c in snapshot.features} == dict.fromkeys(
        signature.feature_names, 0
    )
    tests = {c.name: c.test for c in snapshot.features}
    assert tests == {"ratio": "ks", "count": "ks", "flag": "chi2", "colour": "chi2",
                     "size": "chi2", "shade": "chi2", "city": "chi2"}  # fmt: skip

    shifted = DriftWindow.for_signature(signature, reference)
    records = [{**_record(rng), "colour": "blue", "city": "marseille"} for _ in range(1000)]
    _observe(shifted, signature, records)
    statuses = {c.name: c.status for c in shifted.snapshot().features}
    assert statuses == {**dict.fromkeys(signature.feature_names, 0), "colour": 2, "city": 2}


def test_nulls_of_a_nullable_categorical_count_as_nulls_not_as_its_indicator_level() -> None:
    signature = _mixed_signature()
    rng = np.random.default_rng(1)
    reference = _reference(signature, [_record(rng) for _ in range(2000)])
    window = DriftWindow.for_signature(signature, reference)
    _observe(window, signature, [{**_record(rng), "colour": None} for _ in range(600)])
    colour = next(c for c in window.snapshot().features if c.name == "colour")
    assert colour.null_rate == 1.0
    assert colour.null_spike
    assert colour.values == 0
