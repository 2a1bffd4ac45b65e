"""The vectorised path for all-float records: the same tensors as the validator, never a refusal."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keel.signature import Feature, Output, Signature, to_arrays
from keel.signature.arrays import dense_plan
from keel.signature.fast_records import float_records
from keel.signature.records import record_validator

from .strategies import float_signatures, invalid_values, valid_records

SCORE = Output(name="score", dtype="float32", shape=[None, 1], kind="score")
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _validator_path(records: list[dict[str, Any]], signature: Signature) -> dict[str, np.ndarray]:
    validated = record_validator(signature).validate(records)
    plan = dense_plan(signature)
    assert plan is not None
    return {tensor.name: tensor.build(validated) for tensor in plan}


def _plain(record: dict[str, Any], signature: Signature) -> bool:
    """Every feature present with a finite number: what the fast path must accept."""
    values = [record.get(f.name) for f in signature.features]
    return all(type(v) in (int, float) and math.isfinite(v) for v in values)


@PROPERTY
@given(st.data())
def test_fast_path_builds_the_validators_tensors_or_steps_aside(data: st.DataObject) -> None:
    signature = data.draw(float_signatures())
    records = data.draw(valid_records(signature))
    fast = float_records(signature)
    assert fast is not None
    arrays = fast.arrays(records)
    if all(_plain(r, signature) for r in records):
        assert arrays is not None
    if arrays is None:
        return
    expected = _validator_path(records, signature)
    assert arrays.keys() == expected.keys()
    for name, array in arrays.items():
        assert array.dtype == expected[name].dtype
        np.testing.assert_array_equal(array, expected[name])


@PROPERTY
@given(st.data())
def test_fast_path_never_accepts_an_invalid_value(data: st.DataObject) -> None:
    signature = data.draw(float_signatures())
    records = data.draw(valid_records(signature).filter(bool))
    feature = data.draw(st.sampled_from(signature.features))
    index = data.draw(st.integers(0, len(records) - 1))
    records[index][feature.name] = data.draw(invalid_values(feature))
    fast = float_records(signature)
    assert fast is not None
    assert fast.arrays(records) is None


def test_unknown_fields_and_non_records_step_aside() -> None:
    signature = Signature(features=[Feature(name="a", dtype="float")], outputs=[SCORE])
    fast = float_records(signature)
    assert fast is not None
    assert fast.arrays([{"a": 1.0, "b": 2.0}]) is None
    assert fast.arrays([{"b": 2.0}]) is None
    assert fast.arrays([[1.0]]) is None
    assert fast.arrays([{"a": 10**400}]) is None
    assert fast.arrays([{"a": True}]) is None
    single = fast.arrays([{"a": 3}])
    assert single is not None
    np.testing.assert_array_equal(single["input"], np.array([[3.0]], dtype=np.float32))


def test_signatures_with_other_features_have_no_fast_path() -> None:
    signature = Signature(
        features=[Feature(name="a", dtype="float"), Feature(name="n", dtype="int")],
        outputs=[SCORE],
    )
    assert float_records(signature) is None
    assert to_arrays([{"a": 1.0, "n": 2}], signature)["input"].tolist() == [[1.0, 2.0]]
