"""Tests for keel.signature.freshness: feature ages, stale values, and the times requests carry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, get_args

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from keel.errors import FieldError
from keel.signature import (
    COMPUTED_AT_FIELD,
    Feature,
    Output,
    Rule,
    Signature,
    freshness_of,
    split_computed_at,
)
from keel.signature.freshness import CLOCK_SKEW_S, Freshness, parse_time
from keel.signature.rules import RuleViolation

SCORE = Output(name="score", dtype="float32", shape=[None], kind="score")
NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z
HOUR = 3600.0


def _signature(*features: Feature) -> Signature:
    return Signature(features=list(features), outputs=[SCORE])


@pytest.fixture
def shop() -> Signature:
    """spend_30d comes from a daily cache (stale: reject); visits_7d is only counted."""
    return _signature(
        Feature(name="basket_value", dtype="float"),
        Feature(name="spend_30d", dtype="float", max_age_s=HOUR),
        Feature(name="visits_7d", dtype="int", max_age_s=HOUR, on_stale="count"),
    )


@pytest.fixture
def freshness(shop: Signature) -> Freshness:
    found = freshness_of(shop)
    assert found is not None
    return found


def _rules(errors: list[FieldError]) -> list[tuple[int | None, str, str]]:
    return [(e.index, e.field, e.rule) for e in errors]


# The feature declaration


def test_stale_is_a_rule_name() -> None:
    assert "stale" in get_args(Rule)


def test_a_feature_declares_a_maximum_age_and_rejects_stale_values_by_default() -> None:
    feature = Feature(name="spend", dtype="float", max_age_s=3600)
    assert feature.max_age_s == 3600.0
    assert feature.on_stale == "reject"


@pytest.mark.parametrize("max_age_s", [0, -1.0, float("inf"), float("nan"), True, "3600"])
def test_a_maximum_age_must_be_a_positive_finite_number(max_age_s: object) -> None:
    spec: dict[str, Any] = {"name": "spend", "dtype": "float", "max_age_s": max_age_s}
    with pytest.raises(ValidationError, match="max_age_s"):
        Feature(**spec)


def test_counting_stale_values_without_a_maximum_age_is_refused_naming_the_feature() -> None:
    with pytest.raises(ValidationError, match=r"'spend'.*needs max_age_s"):
        Feature(name="spend", dtype="float", on_stale="count")


def test_an_unknown_stale_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="on_stale"):
        Feature(name="spend", dtype="float", max_age_s=60, on_stale="drop")


def test_signature_json_written_before_freshness_still_loads() -> None:
    # As the registry wrote metadata signatures before max_age_s existed: every field, nulls too.
    old = {
        "features": [
            {
                "name": "spend",
                "dtype": "float",
                "minimum": 0,
                "maximum": None,
                "nullable": False,
                "missing": "reject",
                "missing_indicator": None,
                "allow_nan": False,
                "levels": None,
                "encoding": None,
                "description": "",
                "unit": "EUR",
            }
        ],
        "outputs": [SCORE.model_dump()],
    }
    signature = Signature.from_json(json.dumps(old))
    assert signature.feature("spend").max_age_s is None
    assert signature.feature("spend").on_stale == "reject"
    assert freshness_of(signature) is None


def test_a_feature_without_a_maximum_age_is_written_as_before_freshness_existed() -> None:
    feature = Feature(name="spend", dtype="float")
    assert "max_age_s" not in feature.model_dump_json()
    assert "on_stale" not in feature.model_dump()


def test_a_declared_maximum_age_and_policy_survive_a_json_round_trip(shop: Signature) -> None:
    copy = Signature.from_json(shop.to_json())
    assert copy == shop
    assert copy.feature("visits_7d").on_stale == "count"


# The rules built from a signature


def test_freshness_is_built_once_per_signature(shop: Signature) -> None:
    assert freshness_of(shop) is freshness_of(shop)


def test_freshness_lists_the_features_that_declare_a_maximum_age(freshness: Freshness) -> None:
    assert freshness.declared == ("spend_30d", "visits_7d")


# Records: the reserved key


def test_split_pops_the_reserved_key_so_the_validator_never_sees_it(shop: Signature) -> None:
    records: list[Any] = [
        {"basket_value": 1.0, "spend_30d": 2.0, "visits_7d": 3, COMPUTED_AT_FIELD: {"x": 1}},
        {"basket_value": 1.0, "spend_30d": 2.0, "visits_7d": 3},
    ]
    times = split_computed_at(records)
    assert times == [{"x": 1}, None]
    assert all(COMPUTED_AT_FIELD not in record for record in records)
    assert len(shop.validate_records(records)) == 2


def test_split_leaves_records_without_the_key_as_they_were() -> None:
    records: list[Any] = [{"a": float(i)} for i in range(1_000)] + [[1, 2], "x", None]
    before = [dict(r) if isinstance(r, dict) else r for r in records]
    assert split_computed_at(records) == [None] * len(records)
    assert records == before


def test_checking_records_that_carry_no_times_walks_no_record(freshness: Freshness) -> None:
    class Untouchable(list[object]):
        def __iter__(self) -> Any:
            raise AssertionError("the records were walked one by one")

        def __getitem__(self, index: Any) -> Any:
            raise AssertionError("a record was read")

    result = freshness.check(Untouchable([None] * 10_000), NOW)
    assert (result.ages, result.stale, result.errors) == ({}, {}, [])


def test_a_fresh_value_is_accepted_and_its_age_observed(freshness: Freshness) -> None:
    result = freshness.check([{"spend_30d": NOW - 60}], NOW)
    assert result.errors == []
    assert result.stale == {}
    np.testing.assert_array_equal(result.ages["spend_30d"], [60.0])


def test_a_stale_value_is_refused_naming_record_feature_age_and_maximum(
    freshness: Freshness,
) -> None:
    times = [None, {"spend_30d": NOW - 60}, {"spend_30d": NOW - 7260}]
    result = freshness.check(times, NOW)
    assert result.errors == [
        FieldError(2, "spend_30d", "stale", "computed 7260 s ago; the maximum age is 3600 s")
    ]
    assert result.stale == {"spend_30d": 1}
    np.testing.assert_array_equal(result.ages["spend_30d"], [60.0, 7260.0])


def test_a_value_exactly_at_the_maximum_age_is_fresh(freshness: Freshness) -> None:
    assert freshness.check([{"spend_30d": NOW - HOUR}], NOW).errors == []


def test_a_stale_value_under_count_is_counted_not_refused(freshness: Freshness) -> None:
    times = [{"visits_7d": NOW - 2 * HOUR}, {"visits_7d": NOW - 3 * HOUR}, {"visits_7d": NOW}]
    result = freshness.check(times, NOW)
    assert result.errors == []
    assert result.stale == {"visits_7d": 2}
    np.testing.assert_array_equal(result.ages["visits_7d"], [7200.0, 10800.0, 0.0])


def test_a_feature_whose_time_is_not_given_has_no_age(freshness: Freshness) -> None:
    result = freshness.check([{"spend_30d": NOW}, {}, {"visits_7d": None}], NOW)
    assert result.errors == []
    assert list(result.ages) == ["spend_30d"]


def test_a_time_for_a_feature_without_a_maximum_age_is_checked_but_not_observed(
    freshness: Freshness,
) -> None:
    assert freshness.check([{"basket_value": NOW - 10 * HOUR}], NOW).ages == {}
    bad = freshness.check([{"basket_value": "yesterday"}], NOW)
    assert _rules(bad.errors) == [(0, COMPUTED_AT_FIELD, "type")]


@pytest.mark.parametrize("computed_at", [[NOW], "2024-05-01T12:00:00Z", NOW, True])
def test_computed_at_that_is_not_an_object_is_refused(
    freshness: Freshness, computed_at: object
) -> None:
    (error,) = freshness.check([computed_at], NOW).errors
    assert (error.index, error.field, error.rule) == (0, COMPUTED_AT_FIELD, "type")
    assert "expected an object of feature name" in error.message


def test_an_unknown_feature_in_computed_at_is_refused_by_name(freshness: Freshness) -> None:
    (error,) = freshness.check([None, {"spend_90d": NOW}], NOW).errors
    assert (error.index, error.field, error.rule) == (1, COMPUTED_AT_FIELD, "type")
    assert error.message == "'spend_90d' is not a feature of this signature"


def test_a_time_without_a_timezone_is_refused_saying_so(freshness: Freshness) -> None:
    (error,) = freshness.check([{"spend_30d": "2024-05-01T11:00:00"}], NOW).errors
    assert error.rule == "type"
    assert error.message.startswith("'spend_30d': ")
    assert "has no timezone" in error.message


def test_a_time_in_the_future_beyond_clock_skew_is_refused_saying_so(
    freshness: Freshness,
) -> None:
    (error,) = freshness.check([{"spend_30d": NOW + 120}], NOW).errors
    assert error.rule == "type"
    assert "computed 120 s in the future" in error.message
    assert f"at most {CLOCK_SKEW_S:g} s" in error.message


def test_a_time_slightly_ahead_is_clock_skew_and_has_age_zero(freshness: Freshness) -> None:
    result = freshness.check([{"spend_30d": NOW + CLOCK_SKEW_S / 2}], NOW)
    assert result.errors == []
    np.testing.assert_array_equal(result.ages["spend_30d"], [0.0])


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yesterday", "expected a Unix timestamp"), ("1714564800", "expected a Unix timestamp")],
)
def test_an_unparsable_time_is_refused_naming_the_feature(
    freshness: Freshness, value: str, expected: str
) -> None:
    (error,) = freshness.check([{"visits_7d": value}], NOW).errors
    assert error.message.startswith("'visits_7d': ")
    assert expected in error.message


def test_every_problem_of_every_record_is_reported(freshness: Freshness) -> None:
    times = [
        {"spend_30d": NOW - 2 * HOUR, "visits_7d": "soon", "nope": 1},
        None,
        {"spend_30d": NOW - 3 * HOUR},
    ]
    assert _rules(freshness.check(times, NOW).errors) == [
        (0, COMPUTED_AT_FIELD, "type"),
        (0, COMPUTED_AT_FIELD, "type"),
        (0, "spend_30d", "stale"),
        (2, "spend_30d", "stale"),
    ]


# Reading times


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1_714_564_800, NOW),
        (1_714_564_800.25, NOW + 0.25),
        ("2024-05-01T12:00:00Z", NOW),
        ("2024-05-01T12:00:00+00:00", NOW),
        ("2024-05-01T14:00:00+02:00", NOW),
        ("2024-05-01T12:00:00.5Z", NOW + 0.5),
        ("2024-05-01t12:00:00z", NOW),
        ("2024-05-01 12:00:00Z", NOW),
    ],
)
def test_times_are_unix_seconds_or_iso_strings_with_a_timezone(
    value: object, seconds: float
) -> None:
    assert parse_time(value) == seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "got bool"),
        (None, "got null"),
        (float("nan"), "not a finite"),
        (10**400, "not a finite"),
        ("2024-05-01", "no timezone"),
        ("", "expected a Unix timestamp"),
        ({"t": 1}, "got dict"),
    ],
)
def test_what_is_not_a_time_is_refused_saying_why(value: object, expected: str) -> None:
    with pytest.raises(RuleViolation, match=expected) as excinfo:
        parse_time(value)
    assert excinfo.value.rule == "type"


@given(st.datetimes(timezones=st.timezones()))
def test_any_aware_datetime_in_iso_form_reads_as_its_timestamp(moment: datetime) -> None:
    # Skip the few instants whose UTC form falls outside datetime's range.
    try:
        expected = moment.timestamp()
    except OverflowError:
        return
    assert parse_time(moment.isoformat()) == expected


@given(st.one_of(st.text(), st.floats(), st.integers(), st.booleans(), st.none()))
def test_parsing_any_value_gives_seconds_or_a_type_violation(value: object) -> None:
    outcome: float | str
    try:
        outcome = parse_time(value)
    except RuleViolation as violation:
        outcome = violation.rule
    assert outcome == "type" or np.isfinite(outcome)


def test_fixed_offsets_and_utc_agree() -> None:
    moment = datetime(2024, 5, 1, 12, tzinfo=UTC)
    shifted = moment.astimezone(timezone(timedelta(hours=-7)))
    assert parse_time(shifted.isoformat()) == parse_time(moment.isoformat()) == NOW


# The v2 request parameter


def test_a_request_level_time_applies_to_every_row(freshness: Freshness) -> None:
    result = freshness.check_request({"visits_7d": NOW - 2 * HOUR}, rows=4, now=NOW)
    assert result.errors == []
    assert result.stale == {"visits_7d": 4}
    np.testing.assert_array_equal(result.ages["visits_7d"], [7200.0] * 4)


def test_a_stale_request_level_time_is_refused_once_without_a_record_index(
    freshness: Freshness,
) -> None:
    result = freshness.check_request({"spend_30d": "2024-05-01T10:00:00Z"}, rows=1000, now=NOW)
    assert result.errors == [
        FieldError(None, "spend_30d", "stale", "computed 7200 s ago; the maximum age is 3600 s")
    ]


def test_a_malformed_request_level_time_names_the_parameter(freshness: Freshness) -> None:
    result = freshness.check_request({"spend_90d": NOW, "spend_30d": "later"}, rows=2, now=NOW)
    assert _rules(result.errors) == [(None, "computed_at", "type"), (None, "computed_at", "type")]
    assert freshness.check_request(None, rows=2, now=NOW).errors == []
