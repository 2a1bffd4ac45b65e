"""The request validator: JSON records checked against a signature with a generated pydantic model.

Pydantic owns the shape of a request (a list of objects, no unknown fields,
every required feature present) and gathers every violation in one pass; each
value goes through ``keel.signature.values.value_checker``, so records and
columns of Python objects obey the same code. Pydantic's own error types are
mapped to keel's rule names and never reach a client.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from keel.errors import FieldError, InvalidRequest
from keel.signature.feature import INT64_MAX, INT64_MIN, Feature
from keel.signature.rules import (
    REQUIRED_MESSAGE,
    Rule,
    RuleViolation,
    kind_of,
    unknown_field_message,
)
from keel.signature.values import FLOAT32_MAX, FeatureValue, value_checker

if TYPE_CHECKING:
    from keel.signature.signature import Signature

_OWN_RULES: frozenset[str] = frozenset(get_args(Rule))

MAX_REPORTED_ERRORS = 100
"""Most violations one validation reports: measured, 20,000 records of 30 NaN fields made a
76 MB error answer and 13 s of work on the server's event loop without a cap."""

# Pydantic error types that describe the shape of a request, by the keel rule they break.
_SHAPE_RULES: dict[str, Rule] = {
    "missing": "required",
    "extra_forbidden": "unknown_field",
    "invalid_key": "unknown_field",
    "model_type": "not_a_record",
    "model_attributes_type": "not_a_record",
}


class RecordValidator:
    """Validates lists of JSON records against one signature; build once, reuse."""

    def __init__(self, signature: Signature) -> None:
        float32 = signature.float32_features
        self._names = signature.feature_names
        # Field names are positional because feature names need not be Python identifiers
        # and could shadow BaseModel attributes; the alias is the feature name.
        fields: dict[str, Any] = {
            f"f{position}": _field_of(feature, feature.name in float32)
            for position, feature in enumerate(signature.features)
        }
        self._record: type[BaseModel] = create_model(
            "Record",
            __config__=ConfigDict(extra="forbid", validate_by_alias=True, validate_by_name=False),
            **fields,
        )

    def validate(self, records: object) -> list[dict[str, FeatureValue]]:
        """Check records; return them with every feature present (None where missing).

        Raises ``InvalidRequest`` naming the violations in record order, the first
        ``MAX_REPORTED_ERRORS`` of them: checking stops there, so a large request of
        bad records costs neither a long validation nor a huge error answer.
        """
        if not isinstance(records, list | tuple):
            message = f"expected a list of records, got {kind_of(records)}"
            raise InvalidRequest([FieldError(None, "", "not_a_record", message)])
        validated: list[dict[str, FeatureValue]] = []
        errors: list[FieldError] = []
        for index, record in enumerate(records):
            try:
                checked = self._record.model_validate(record)
            except ValidationError as error:
                found = [_field_error(index, item, self._names) for item in error.errors()]
                # A misspelt feature is the likely cause of the "required" errors beside it,
                # so it comes first, where a long list is not cut before it.
                found.sort(key=lambda problem: problem.rule != "unknown_field")
                errors.extend(found)
                if len(errors) >= MAX_REPORTED_ERRORS:
                    raise InvalidRequest(errors[:MAX_REPORTED_ERRORS]) from None
            else:
                validated.append(checked.model_dump(by_alias=True))
        if errors:
            raise InvalidRequest(errors)
        return validated

    def json_schema(self) -> dict[str, Any]:
        """Return the JSON Schema of a request body: a list of records."""
        return {"type": "array", "items": self._record.model_json_schema()}


def record_validator(signature: Signature) -> RecordValidator:
    """The validator of ``signature``, built once and kept on the signature itself.

    Kept on the (immutable) signature rather than in an lru_cache: hashing a
    signature of dozens of features on every request cost more than validating.
    """
    cache = signature.compiled_cache
    validator = cache.get("record_validator")
    if not isinstance(validator, RecordValidator):
        validator = cache["record_validator"] = RecordValidator(signature)
    return validator


def _field_of(feature: Feature, float32: bool) -> tuple[Any, Any]:
    """Return the (annotation, FieldInfo) pair that validates one feature's value."""
    check = BeforeValidator(_checker(feature, float32))
    checked: Any = Annotated[_schema_type(feature), check]
    about: dict[str, Any] = {
        "alias": feature.name,
        "description": feature.description or None,
        "json_schema_extra": _schema_bounds(feature, float32) or None,
    }
    if feature.nullable:
        return checked | None, Field(default=None, **about)
    return checked, Field(**about)


def _schema_bounds(feature: Feature, float32: bool) -> dict[str, float | int]:
    """The bounds the value checker enforces, as JSON Schema states them.

    Beyond the declared ones: an int must fit 64 bits, and a float going into a float32
    tensor must fit float32; a schema without them would call refused values valid.
    """
    low: float | int | None = feature.minimum
    high: float | int | None = feature.maximum
    if feature.dtype == "int":
        low = INT64_MIN if low is None else max(low, INT64_MIN)
        high = INT64_MAX if high is None else min(high, INT64_MAX)
    elif feature.dtype == "float" and float32:
        low = -FLOAT32_MAX if low is None else max(low, -FLOAT32_MAX)
        high = FLOAT32_MAX if high is None else min(high, FLOAT32_MAX)
    return {key: value for key, value in (("minimum", low), ("maximum", high)) if value is not None}


def _schema_type(feature: Feature) -> Any:
    """Return the type pydantic sees after the value checker (it shapes the JSON Schema)."""
    if feature.dtype == "categorical":
        return Literal[tuple(feature.levels or ())]
    return {"float": float, "int": int, "bool": bool, "string": str}[feature.dtype]


def _checker(feature: Feature, float32: bool) -> Callable[[object], FeatureValue]:
    check_value = value_checker(feature, float32)

    def check(value: object) -> FeatureValue:
        try:
            return check_value(value)
        except RuleViolation as violation:
            # The message goes in the context so braces in a submitted value are not a template.
            raise PydanticCustomError(
                violation.rule, "{message}", {"message": violation.message}
            ) from None

    return check


def _field_error(index: int, item: ErrorDetails, features: Sequence[str]) -> FieldError:
    """Translate one pydantic error about record ``index`` into keel's FieldError."""
    loc = item["loc"]
    field = str(loc[0]) if loc else ""
    kind = item["type"]
    if kind in _OWN_RULES:
        context = item.get("ctx") or {}
        return FieldError(index, field, kind, str(context.get("message", item["msg"])))
    rule = _SHAPE_RULES.get(kind, "type")
    if rule == "unknown_field":
        return FieldError(index, field, rule, unknown_field_message(field, features))
    return FieldError(index, field, rule, _shape_message(rule, item))


def _shape_message(rule: Rule, item: ErrorDetails) -> str:
    if rule == "required":
        return REQUIRED_MESSAGE
    if rule == "not_a_record":
        return f"expected an object of feature values, got {kind_of(item['input'])}"
    return item["msg"]
