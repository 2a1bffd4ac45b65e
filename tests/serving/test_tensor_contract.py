"""The v2 tensor contract: its cheap clean-input path never accepts what the full check refuses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keel.errors import InvalidRequest
from keel.runtimes import TensorSpec
from keel.serving.tensor_contract import TensorContract, build_contract
from keel.signature import Feature, ModelInput, Output, Signature
from serving.bounded_signatures import FLOAT_SIGNATURE

SIGNATURE = FLOAT_SIGNATURE
COLUMNS = len(SIGNATURE.features)


def contract(dtype: str) -> TensorContract:
    name = SIGNATURE.inputs[0].name
    return build_contract(SIGNATURE, (TensorSpec(name, dtype, (None, COLUMNS)),))


def verdict(rules: TensorContract, array: np.ndarray) -> bool:
    try:
        rules.check({SIGNATURE.inputs[0].name: array})
    except InvalidRequest:
        return False
    return True


EDGES = [0.1, 0.3, 0.0999999, 0.3000001, -1.0, 0.0, -0.0, 1e38, 3.4028235e38, 1e39]
edge_values = st.sampled_from([*EDGES, float("nan"), float("inf"), float("-inf")])
values = st.one_of(edge_values, st.floats(allow_nan=True, allow_infinity=True, width=32))


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(st.lists(values, min_size=COLUMNS, max_size=COLUMNS), min_size=1, max_size=3))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_clean_path_agrees_with_the_rule_by_rule_check(
    dtype: str, rows: list[list[float]]
) -> None:
    with np.errstate(over="ignore"):  # 1e39 becomes infinity in float32, as a client's would
        array = np.array(rows, dtype=dtype)
    rules = contract(dtype)
    accepted = verdict(rules, array)
    as_float64 = array.astype(np.float64)
    # NaN fails every comparison, so each rule below refuses it unless it says otherwise.
    share, free, count, income, _ = as_float64.T
    expected = bool(
        np.all((share >= 0.1) & (share <= 0.3))
        and np.all(np.isfinite(free))
        and np.all((count >= 0) & (count <= 1e39))
        and np.all((income == -1.0) | (income >= 0) & np.isfinite(income))
    )  # ratio allows NaN and infinity: anything goes
    assert accepted == expected, (array, accepted, expected)


def test_a_float32_value_just_outside_a_bound_is_refused_naming_the_feature() -> None:
    rules = contract("float32")
    row = [0.2, 1.0, 5.0, 10.0, 0.5]
    assert verdict(rules, np.array([row], dtype=np.float32))
    below = np.nextafter(np.float32(0.1), np.float32(0))  # the largest float32 under 0.1
    with pytest.raises(InvalidRequest) as refused:
        rules.check({SIGNATURE.inputs[0].name: np.array([[below, *row[1:]]], dtype=np.float32)})
    assert [(e.field, e.rule) for e in refused.value.errors] == [("share", "minimum")]


def test_every_input_is_held_to_its_features_rules_strings_included() -> None:
    signature = Signature(
        features=[
            Feature(name="age", dtype="int", minimum=18, maximum=120),
            Feature(name="plan", dtype="categorical", levels=["free", "pro"]),
            Feature(name="region", dtype="categorical", levels=["north", "south"]),
        ],
        outputs=[Output(name="score", dtype="float32", shape=[None, 1], kind="score")],
        inputs=[
            ModelInput(name="numbers", dtype="float32", features=["age", "plan"]),
            ModelInput(name="words", dtype="string", features=["region"]),
        ],
    )
    rules = build_contract(
        signature,
        (TensorSpec("numbers", "float32", (None, 3)), TensorSpec("words", "object", (None, 1))),
    )
    words = np.array([["north"], ["east"]], dtype=object)
    numbers = np.array([[30, 1, 0], [59.5, 1, 1]], dtype=np.float32)
    with pytest.raises(InvalidRequest) as refused:
        rules.check({"numbers": numbers, "words": words})
    assert [(e.index, e.field, e.rule) for e in refused.value.errors] == [
        (1, "age", "type"),
        (1, "plan", "level"),
        (1, "region", "level"),
    ]
    assert refused.value.errors[2].message.startswith("input 'words' column 0: 'east'")
    rules.check({"numbers": numbers[:1], "words": words[:1]})
