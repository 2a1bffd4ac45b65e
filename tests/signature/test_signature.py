"""Tests for keel.signature.signature: the whole schema, its consistency and its JSON form."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from keel.errors import SignatureError
from keel.signature import DEFAULT_INPUT, Feature, ModelInput, Output, Signature

SCORE = Output(name="score", dtype="float32", shape=[None], kind="score")


def _signature(features: list[Feature], inputs: list[ModelInput] | None = None) -> Signature:
    if inputs is None:
        return Signature(features=features, outputs=[SCORE])
    return Signature(features=features, outputs=[SCORE], inputs=inputs)


def test_json_round_trip_gives_an_equal_signature(credit: Signature) -> None:
    assert Signature.from_json(credit.to_json()) == credit


def test_json_round_trip_keeps_a_nan_indicator() -> None:
    feature = Feature(
        name="x",
        dtype="float",
        allow_nan=True,
        nullable=True,
        missing="indicator",
        missing_indicator=math.nan,
    )
    text = _signature([feature]).to_json()
    indicator = Signature.from_json(text).feature("x").missing_indicator
    assert isinstance(indicator, float)
    assert math.isnan(indicator)


def test_json_leaves_out_what_was_not_declared(credit: Signature) -> None:
    age = json.loads(credit.to_json())["features"][0]
    assert "levels" not in age
    assert "missing_indicator" not in age


def test_json_keeps_integer_values_as_integers() -> None:
    feature = Feature(name="n", dtype="int", minimum=0, maximum=10)
    loaded = Signature.from_json(_signature([feature]).to_json()).feature("n")
    assert loaded.minimum == 0
    assert isinstance(loaded.minimum, int)


def test_from_file_reads_what_to_json_wrote(credit: Signature, tmp_path: Path) -> None:
    path = tmp_path / "signature.json"
    path.write_text(credit.to_json(), encoding="utf-8")
    assert Signature.from_file(path) == credit


def test_from_file_turns_a_missing_file_into_a_signature_error(tmp_path: Path) -> None:
    with pytest.raises(SignatureError, match="cannot read"):
        Signature.from_file(tmp_path / "absent.json")


def test_from_json_turns_a_bad_definition_into_a_signature_error_naming_the_feature() -> None:
    text = json.dumps(
        {
            "features": [{"name": "price", "dtype": "float", "levels": ["a"]}],
            "outputs": [SCORE.model_dump()],
        }
    )
    with pytest.raises(SignatureError, match="'price'"):
        Signature.from_json(text)


def test_from_json_refuses_text_that_is_not_json() -> None:
    with pytest.raises(SignatureError):
        Signature.from_json("{not json")


def test_omitted_inputs_become_one_float32_input_of_every_feature_in_order() -> None:
    features = [Feature(name="b", dtype="float"), Feature(name="a", dtype="int")]
    signature = _signature(features)
    assert signature.inputs == (
        ModelInput(name=DEFAULT_INPUT, dtype="float32", features=["b", "a"]),
    )


def test_omitted_inputs_work_from_plain_dicts_too() -> None:
    signature = Signature.model_validate(
        {"features": [{"name": "a", "dtype": "float"}], "outputs": [SCORE.model_dump()]}
    )
    assert signature.inputs[0].features == ("a",)


def test_default_input_cannot_hold_a_string_feature() -> None:
    with pytest.raises(ValidationError, match="'note'"):
        _signature([Feature(name="note", dtype="string")])


def _refused(features: list[Feature], inputs: list[ModelInput] | None = None) -> str:
    with pytest.raises(ValidationError) as excinfo:
        _signature(features, inputs)
    return str(excinfo.value)


def test_duplicate_feature_names_are_refused() -> None:
    message = _refused([Feature(name="a", dtype="float"), Feature(name="a", dtype="int")])
    assert "repeated: ['a']" in message


def test_duplicate_output_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="output names"):
        Signature(features=[Feature(name="a", dtype="float")], outputs=[SCORE, SCORE])


def test_a_feature_in_two_inputs_is_refused() -> None:
    features = [Feature(name="a", dtype="float"), Feature(name="b", dtype="float")]
    inputs = [
        ModelInput(name="x", dtype="float32", features=["a", "b"]),
        ModelInput(name="y", dtype="float32", features=["a"]),
    ]
    assert "feature 'a' is used by inputs 'x' and 'y'" in _refused(features, inputs)


def test_an_unknown_feature_in_an_input_is_refused() -> None:
    inputs = [ModelInput(name="x", dtype="float32", features=["a", "ghost"])]
    assert "unknown feature 'ghost'" in _refused([Feature(name="a", dtype="float")], inputs)


def test_a_feature_no_input_uses_is_refused() -> None:
    features = [Feature(name="a", dtype="float"), Feature(name="b", dtype="float")]
    inputs = [ModelInput(name="x", dtype="float32", features=["a"])]
    assert "not used by any input: ['b']" in _refused(features, inputs)


@pytest.mark.parametrize(
    ("feature", "tensor_dtype"),
    [
        (Feature(name="a", dtype="float"), "int64"),
        (Feature(name="a", dtype="string"), "float32"),
        (Feature(name="a", dtype="int"), "string"),
        (Feature(name="a", dtype="int"), "bool"),
        (Feature(name="a", dtype="int", minimum=0, maximum=2**40), "int32"),
        (Feature(name="a", dtype="int"), "int32"),
    ],
)
def test_a_tensor_that_cannot_hold_a_feature_faithfully_is_refused(
    feature: Feature, tensor_dtype: Any
) -> None:
    inputs = [ModelInput(name="x", dtype=tensor_dtype, features=["a"])]
    assert "'a'" in _refused([feature], inputs)


def test_int_feature_with_int32_bounds_fits_an_int32_tensor() -> None:
    feature = Feature(name="a", dtype="int", minimum=0, maximum=1000)
    signature = _signature([feature], [ModelInput(name="x", dtype="int32", features=["a"])])
    assert signature.input_width("x") == 1


def test_feature_looks_up_by_name(credit: Signature) -> None:
    assert credit.feature("tier").encoding == "index"
    with pytest.raises(SignatureError, match="no feature named 'ghost'"):
        credit.feature("ghost")


def test_input_width_counts_one_hot_levels(credit: Signature) -> None:
    # age, income, ratio, owner, region (3 levels one-hot), tier (index)
    assert credit.input_width("numeric") == 4 + 3 + 1
    assert credit.input_width("text") == 1
    with pytest.raises(SignatureError):
        credit.input_width("ghost")


def test_signature_is_immutable(credit: Signature) -> None:
    attribute = "features"
    with pytest.raises(ValidationError):
        setattr(credit, attribute, ())
    assert isinstance(credit.features, tuple)


def test_records_json_schema_describes_the_request_body(credit: Signature) -> None:
    schema = credit.records_json_schema()
    record = schema["items"]
    assert schema["type"] == "array"
    assert record["additionalProperties"] is False
    assert set(record["required"]) == {"age", "ratio", "owner", "region"}
    assert record["properties"]["age"]["minimum"] == 18
    assert record["properties"]["region"]["enum"] == ["north", "south", "east"]


def test_float_bounds_beyond_float32_cannot_go_into_a_float32_tensor() -> None:
    feature = Feature(name="a", dtype="float", minimum=1e39)
    assert "float32" in _refused([feature])
    wide = _signature([feature], [ModelInput(name="x", dtype="float64", features=["a"])])
    assert wide.float32_features == frozenset()


def test_float32_features_are_the_float_features_of_float32_tensors(credit: Signature) -> None:
    assert credit.float32_features == {"income", "ratio"}
