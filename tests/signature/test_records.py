"""Tests for keel.signature.records: the request validator and its rule names."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from keel.errors import FieldError, InvalidRequest
from keel.signature import Feature, Output, Signature, record_validator
from keel.signature.records import MAX_REPORTED_ERRORS
from keel.signature.values import FLOAT32_MAX


def _errors(signature: Signature, records: object) -> list[FieldError]:
    with pytest.raises(InvalidRequest) as excinfo:
        signature.validate_records(records)
    return excinfo.value.errors


def _only(signature: Signature, records: object) -> tuple[int | None, str, str]:
    errors = _errors(signature, records)
    assert len(errors) == 1, errors
    return errors[0].index, errors[0].field, errors[0].rule


def test_valid_records_come_back_with_every_feature(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    sparse = {k: v for k, v in applicant.items() if k not in ("income", "tier", "employer")}
    validated = credit.validate_records([applicant, sparse])
    assert validated[0] == applicant
    assert validated[1] == {**sparse, "income": None, "tier": None, "employer": None}


def test_an_int_is_accepted_for_a_float_feature_and_becomes_a_float(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    [validated] = credit.validate_records([{**applicant, "income": 52000}])
    assert validated["income"] == 52000.0
    assert isinstance(validated["income"], float)


def test_an_integral_float_is_accepted_for_an_int_feature(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    [validated] = credit.validate_records([{**applicant, "age": 40.0}])
    assert validated["age"] == 40
    assert isinstance(validated["age"], int)


def test_numpy_scalars_are_accepted(credit: Signature, applicant: dict[str, Any]) -> None:
    record = {**applicant, "age": np.int32(40), "income": np.float32(1.5), "owner": np.True_}
    [validated] = credit.validate_records([record])
    assert validated["age"] == 40
    assert validated["income"] == 1.5
    assert validated["owner"] is True


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("age", "40", "type"),
        ("age", True, "type"),
        ("age", 40.5, "type"),
        ("age", 2**63, "type"),
        ("age", [40], "type"),
        ("age", 17, "minimum"),
        ("age", 121, "maximum"),
        ("age", None, "null"),
        ("income", "52000", "type"),
        ("income", False, "type"),
        ("income", -0.01, "minimum"),
        ("income", math.nan, "nan"),
        ("income", math.inf, "nan"),
        ("income", -math.inf, "nan"),
        ("owner", 1, "type"),
        ("owner", "true", "type"),
        ("region", "west", "level"),
        ("region", 0, "type"),
        ("region", None, "null"),
        ("tier", "platinum", "level"),
        ("employer", 7, "type"),
    ],
)
def test_each_rule_is_reported_with_its_record_field_and_name(
    credit: Signature, applicant: dict[str, Any], field: str, value: object, rule: str
) -> None:
    good = dict(applicant)
    assert _only(credit, [good, {**applicant, field: value}]) == (1, field, rule)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_accepted_where_declared(
    credit: Signature, applicant: dict[str, Any], value: float
) -> None:
    [validated] = credit.validate_records([{**applicant, "ratio": value}])
    ratio = validated["ratio"]
    assert isinstance(ratio, float)
    assert ratio == value or (math.isnan(ratio) and math.isnan(value))


def test_a_missing_required_feature_breaks_the_required_rule(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    record = {k: v for k, v in applicant.items() if k != "region"}
    assert _only(credit, [record]) == (0, "region", "required")


def test_an_unknown_field_is_refused(credit: Signature, applicant: dict[str, Any]) -> None:
    assert _only(credit, [{**applicant, "postcode": "N1"}]) == (0, "postcode", "unknown_field")


def test_a_non_string_key_is_an_unknown_field(credit: Signature, applicant: dict[str, Any]) -> None:
    assert _only(credit, [{**applicant, 3: "x"}]) == (0, "3", "unknown_field")


def test_a_record_that_is_not_an_object_is_refused(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    assert _only(credit, [applicant, [1, 2]]) == (1, "", "not_a_record")


@pytest.mark.parametrize("body", [{"age": 40}, "records", 3, None])
def test_a_body_that_is_not_a_list_is_refused(credit: Signature, body: object) -> None:
    assert _only(credit, body) == (None, "", "not_a_record")


def test_every_violation_of_every_record_is_reported_at_once(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    records = [
        {**applicant, "age": "old", "owner": 1},
        applicant,
        {**applicant, "region": "west", "extra": 1, "income": math.nan},
        "not a record",
    ]
    found = {(e.index, e.field, e.rule) for e in _errors(credit, records)}
    assert found == {
        (0, "age", "type"),
        (0, "owner", "type"),
        (2, "income", "nan"),
        (2, "region", "level"),
        (2, "extra", "unknown_field"),
        (3, "", "not_a_record"),
    }


def test_reporting_stops_at_the_cap_in_record_order(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    """A huge request of bad records costs a bounded answer, not one error per value."""
    bad = {**applicant, "age": "old", "owner": 1, "region": "west"}
    errors = _errors(credit, [bad] * 10_000)
    assert len(errors) == MAX_REPORTED_ERRORS
    assert [e.index for e in errors] == sorted(e.index for e in errors)
    assert errors[0].index == 0


def test_the_json_schema_states_the_float32_and_int64_ranges_the_checker_enforces(
    credit: Signature,
) -> None:
    fields = credit.records_json_schema()["items"]["properties"]
    assert (fields["age"]["minimum"], fields["age"]["maximum"]) == (18, 120)
    # income goes into a float32 tensor with no maximum of its own; ratio has no bounds.
    assert (fields["income"]["minimum"], fields["income"]["maximum"]) == (0, FLOAT32_MAX)
    assert (fields["ratio"]["minimum"], fields["ratio"]["maximum"]) == (-FLOAT32_MAX, FLOAT32_MAX)
    wide = Signature.model_validate(
        {
            "features": [{"name": "n", "dtype": "int"}],
            "inputs": [{"name": "x", "dtype": "int64", "features": ["n"]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [None], "kind": "score"}],
        }
    )
    n = wide.records_json_schema()["items"]["properties"]["n"]
    assert (n["minimum"], n["maximum"]) == (-(2**63), 2**63 - 1)


def test_messages_are_keels_own_and_say_what_was_wrong(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    errors = _errors(credit, [{**applicant, "age": 200, "region": "west", "zip": 1}])
    messages = {e.field: e.message for e in errors}
    assert messages["age"] == "200 is above the maximum 120"
    assert "'west' is not one of the levels 'north', 'south', 'east'" in messages["region"]
    assert all("pydantic" not in e.message for e in errors)


def test_braces_in_a_submitted_value_do_not_break_the_message(
    credit: Signature, applicant: dict[str, Any]
) -> None:
    [error] = _errors(credit, [{**applicant, "region": "{oops}"}])
    assert "'{oops}'" in error.message


def test_the_validator_is_built_once_per_signature(credit: Signature) -> None:
    assert record_validator(credit) is record_validator(credit)
    # A copy builds its own, and the cache is not part of the signature's JSON.
    copy = Signature.from_json(credit.to_json())
    assert record_validator(copy) is record_validator(copy)
    assert copy.to_json() == credit.to_json()


def test_feature_names_that_are_not_python_identifiers_work() -> None:
    signature = Signature.model_validate(
        {
            "features": [
                {"name": "a.b-c", "dtype": "float"},
                {"name": "model_config", "dtype": "int"},
            ],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [None], "kind": "score"}],
        }
    )
    assert signature.validate_records([{"a.b-c": 1.5, "model_config": 2}]) == [
        {"a.b-c": 1.5, "model_config": 2}
    ]
    # The positional field names used inside the generated model are not accepted as keys.
    found = {(e.field, e.rule) for e in _errors(signature, [{"a.b-c": 1.5, "f1": 2}])}
    assert found == {("model_config", "required"), ("f1", "unknown_field")}


def test_a_misspelt_feature_is_named_first_with_the_feature_it_misspells() -> None:
    signature = Signature(
        features=[Feature(name=f"pixel_{i}", dtype="int") for i in range(40)]
        + [Feature(name="mean_radius", dtype="float")],
        outputs=[Output(name="score", dtype="float32", shape=[None, 1], kind="score")],
    )
    record: dict[str, object] = {f"pixel_{i}": 0 for i in range(40)} | {"mean radius": 1.0}
    with pytest.raises(InvalidRequest) as raised:
        record_validator(signature).validate([record])
    first = raised.value.errors[0]
    assert (first.field, first.rule) == ("mean radius", "unknown_field")
    assert first.message == "not a feature of this signature; did you mean 'mean_radius'?"
