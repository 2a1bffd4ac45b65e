"""Hypothesis strategies for hostile bodies of the JSON records API (``/v1/.../predict``).

Each strategy starts from valid records for a served model and breaks one rule of them.
"""

from __future__ import annotations

from typing import Any

from hostile_v2 import BAD_BYTES, JUNK, NUMBER_TOKENS
from hypothesis import strategies as st
from refusals import HostileRequest
from served_models import ServedModel, json_body

# Names a record key might use to reach something other than a feature.
TRICK_KEYS = [
    "../../etc/passwd",
    "\x00",
    "__class__",
    "__proto__",
    "constructor",
    "@computed_at",
    "",
]


def _records(draw: st.DrawFn, model: ServedModel, most: int = 3) -> list[dict[str, Any]]:
    return [model.record() for _ in range(draw(st.integers(1, most)))]


def _wrong_value(model: ServedModel, feature: str) -> st.SearchStrategy[Any]:
    kinds = [
        st.text(max_size=6),
        st.booleans(),
        st.lists(JUNK, max_size=2),
        st.dictionaries(st.text(max_size=3), JUNK, max_size=2),
    ]
    if feature not in model.nullable:
        kinds.append(st.none())
    if feature in model.integer_features:
        kinds.append(
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer())
        )
    return st.one_of(kinds)


@st.composite
def wrong_types(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    records = _records(draw, model)
    feature = draw(st.sampled_from(model.features))
    records[draw(st.integers(0, len(records) - 1))][feature] = draw(_wrong_value(model, feature))
    body = json_body({"instances": records})
    return HostileRequest(
        "records: wrong types and strings where numbers belong",
        model.predict_path,
        body,
        mentions=("type", "null"),
        field=feature,
    )


@st.composite
def extreme_numbers(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """NaN, infinities, -0.0, values past the bounds and past float32 or int64, as written."""
    records = _records(draw, model)
    feature = draw(st.sampled_from(model.features))
    records[draw(st.integers(0, len(records) - 1))][feature] = "@"
    token = draw(
        st.one_of(
            st.sampled_from(NUMBER_TOKENS),
            st.sampled_from([-0.0, 1e39, -1e39, 3.5e38, 1e308, -1.0, 17, 16.5]).map(repr),
            st.sampled_from([2**63, -(2**63) - 1, 2**64]).map(str),
            st.floats(allow_nan=False, allow_infinity=False).map(repr),
            st.integers().map(str),
        )
    )
    body = json_body({"instances": records}).replace(b'"@"', token.encode())
    mentions = ("JSON", "nan", "minimum", "maximum", "type")
    return HostileRequest(
        "records: NaN, infinities, -0.0 and huge numbers",
        model.predict_path,
        body,
        mentions=mentions,
        field=feature,
        may_succeed=True,
    )


@st.composite
def missing_and_unknown_fields(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    records = _records(draw, model)
    record = records[draw(st.integers(0, len(records) - 1))]
    required = [f for f in model.features if f not in model.nullable]
    if draw(st.booleans()):
        field = draw(st.sampled_from(required))
        del record[field]
        body = json_body({"instances": records})
    else:
        taken = {*model.features, "id", "instances"}
        field = draw(
            st.one_of(st.sampled_from(TRICK_KEYS), st.text(max_size=12)).filter(
                lambda k: k not in taken
            )
        )
        if draw(st.booleans()):
            record[field] = draw(JUNK)
            body = json_body({"instances": records})
        else:
            body = json_body({"instances": records, field: draw(JUNK)})
    return HostileRequest(
        "records: missing and unknown fields",
        model.predict_path,
        body,
        mentions=("required", "unknown"),
        field=field,
    )


@st.composite
def broken_body(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """The body, the instances list or the id is not what the API defines."""
    kind = draw(st.sampled_from(["body", "instances", "records", "id"]))
    if kind == "body":
        document: Any = draw(
            st.one_of(st.lists(JUNK, max_size=2), JUNK.filter(lambda v: not isinstance(v, dict)))
        )
        mentions: tuple[str, ...] = ("instances",)
    elif kind == "instances":
        document = {
            "instances": draw(
                st.one_of(st.just([]), JUNK, st.dictionaries(st.text(max_size=4), JUNK, max_size=2))
            )
        }
        mentions = ("instances",)
    elif kind == "records":
        document = {
            "instances": draw(
                st.lists(
                    st.one_of(
                        JUNK.filter(lambda v: not isinstance(v, dict)), st.lists(JUNK, max_size=2)
                    ),
                    min_size=1,
                    max_size=3,
                )
            )
        }
        mentions = ("record",)
    else:
        document = {
            "instances": [model.record()],
            "id": draw(
                st.one_of(
                    st.integers(),
                    st.booleans(),
                    st.lists(st.text(), max_size=2),
                    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
                )
            ),
        }
        mentions = ("id must be a string",)
    return HostileRequest(
        "records: broken body structure", model.predict_path, json_body(document), mentions=mentions
    )


@st.composite
def deep_nesting(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    depth = draw(st.integers(1_100, 30_000))
    records = _records(draw, model, most=1)
    records[0][draw(st.sampled_from(model.features))] = "@"
    nested = draw(
        st.sampled_from([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])
    )
    body = json_body({"instances": records}).replace(b'"@"', nested)
    return HostileRequest("records: deep nesting", model.predict_path, body, mentions=("JSON",))


@st.composite
def invalid_encoding(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    # The id is left out: a JSON-escaped lone surrogate in it is the known open case
    # (test_hostile_requests.py::test_a_lone_surrogate_in_a_records_id_is_refused).
    body = json_body({"instances": _records(draw, model, most=1)})
    position = draw(st.integers(0, len(body)))
    bad = draw(st.sampled_from(BAD_BYTES))
    mentions = ("JSON", "UTF-8", "unicode", "instances")
    return HostileRequest(
        "records: invalid UTF-8",
        model.predict_path,
        body[:position] + bad + body[position:],
        mentions=mentions,
    )


@st.composite
def huge_arrays(draw: st.DrawFn, model: ServedModel) -> HostileRequest:
    """Many records (within what one request may queue), one broken far down, or none."""
    count = draw(st.integers(300, 2048))
    records = [model.record() for _ in range(count)]
    flawed = draw(st.booleans())
    feature = draw(st.sampled_from(model.features))
    if flawed:
        records[draw(st.integers(count // 2, count - 1))][feature] = "x"
    body = json_body({"instances": records})
    return HostileRequest(
        "records: huge arrays",
        model.predict_path,
        body,
        mentions=("type",),
        field=feature,
        may_succeed=not flawed,
    )


def records_requests(model: ServedModel) -> st.SearchStrategy[HostileRequest]:
    return st.one_of(
        wrong_types(model),
        extreme_numbers(model),
        missing_and_unknown_fields(model),
        broken_body(model),
        deep_nesting(model),
        invalid_encoding(model),
        huge_arrays(model),
    )
