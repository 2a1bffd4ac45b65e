"""Feature freshness: how long ago each feature's value was computed, checked against its maximum.

Training-serving skew is often staleness: a feature served from a cache refreshed
daily while the model was trained on fresh values. A feature may declare
``max_age_s`` (and ``on_stale``), and a request may say when its features were
computed:

* per record, under the reserved key ``"@computed_at"``:
  ``{"income": 1200.0, "@computed_at": {"income": "2024-05-01T12:00:00Z"}}``;
* for a whole v2 request, in its ``computed_at`` parameter (same object shape).

A time is a Unix timestamp in seconds (a JSON number) or an RFC 3339 / ISO 8601
string with a timezone. A feature whose time is not given has no observed age
and is never stale: clients may not know it. Times for features that declare no
``max_age_s`` are checked but not observed, so the features a server reports on
are the ones its signature names. Everything here is pure: the caller passes
``now`` and exports what :class:`FreshnessResult` holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from keel.errors import FieldError
from keel.signature.feature import StalePolicy
from keel.signature.rules import RuleViolation, kind_of, shown

if TYPE_CHECKING:
    from keel.signature.signature import Signature

COMPUTED_AT_FIELD = "@computed_at"
"""The reserved record key holding ``{feature: time computed}``; never a feature name."""

COMPUTED_AT_PARAMETER = "computed_at"
"""The v2 request parameter holding ``{feature: time computed}`` for every row."""

CLOCK_SKEW_S = 5.0
"""How far in the future a time may be before it is refused: client and server clocks differ."""

_TIME_EXAMPLE = "a Unix timestamp in seconds or an RFC 3339 time such as 2024-05-01T12:00:00Z"


@dataclass(frozen=True)
class FreshnessResult:
    """What one request's times say: ages to observe, stale values to count, records to refuse."""

    ages: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    """Seconds since computed, per feature with a max_age_s: one per value whose time was given."""
    stale: dict[str, int] = field(default_factory=dict)
    """Values older than their max_age_s, per feature, under either policy (only counts above 0)."""
    errors: list[FieldError] = field(default_factory=list)
    """Rule ``stale`` for stale values under on_stale='reject'; rule ``type`` for bad times."""


class Freshness:
    """The freshness rules of one signature; build once with :func:`freshness_of`, reuse."""

    def __init__(self, signature: Signature) -> None:
        self.features = frozenset(signature.feature_names)
        self.max_age_s: Mapping[str, float] = {
            f.name: f.max_age_s for f in signature.features if f.max_age_s is not None
        }
        self.on_stale: Mapping[str, StalePolicy] = {
            f.name: f.on_stale for f in signature.features if f.max_age_s is not None
        }

    @property
    def declared(self) -> tuple[str, ...]:
        """Names of the features that declare a max_age_s, in signature order."""
        return tuple(self.max_age_s)

    def check(self, times_per_record: Sequence[object], now: float) -> FreshnessResult:
        """Check each record's ``@computed_at`` (None where absent) against ``now`` (Unix s).

        Errors name the record index; see :class:`FreshnessResult`.
        """
        if times_per_record.count(None) == len(times_per_record):
            return FreshnessResult()
        ages: dict[str, list[float]] = {}
        stale: dict[str, int] = {}
        errors: list[FieldError] = []
        for index, computed_at in enumerate(times_per_record):
            if computed_at is None:
                continue
            times = self._times(computed_at, COMPUTED_AT_FIELD, index, now, errors)
            for name, age in times.items():
                ages.setdefault(name, []).append(age)
                if age > self.max_age_s[name]:
                    stale[name] = stale.get(name, 0) + 1
                    if self.on_stale[name] == "reject":
                        errors.append(self._stale_error(index, name, age))
        arrays = {name: np.array(values, dtype=np.float64) for name, values in ages.items()}
        return FreshnessResult(arrays, stale, errors)

    def check_request(self, computed_at: object, rows: int, now: float) -> FreshnessResult:
        """Check a v2 request's ``computed_at`` parameter, which holds for all ``rows`` rows.

        Every row is observed (ages of length ``rows``; a stale feature counts ``rows``
        stale values), but a problem is reported once, with no record index.
        """
        if computed_at is None:
            return FreshnessResult()
        errors: list[FieldError] = []
        times = self._times(computed_at, COMPUTED_AT_PARAMETER, None, now, errors)
        ages = {name: np.full(rows, age, dtype=np.float64) for name, age in times.items()}
        stale: dict[str, int] = {}
        for name, age in times.items():
            if age > self.max_age_s[name] and rows > 0:
                stale[name] = rows
                if self.on_stale[name] == "reject":
                    errors.append(self._stale_error(None, name, age))
        return FreshnessResult(ages, stale, errors)

    def _times(
        self,
        computed_at: object,
        where: str,
        index: int | None,
        now: float,
        errors: list[FieldError],
    ) -> dict[str, float]:
        """Ages of the declared features in one ``computed_at`` object; problems go to errors."""
        if not isinstance(computed_at, dict):
            message = (
                f"expected an object of feature name to the time it was computed, "
                f"got {kind_of(computed_at)}"
            )
            errors.append(FieldError(index, where, "type", message))
            return {}
        ages: dict[str, float] = {}
        for name, value in computed_at.items():
            if name not in self.features:
                message = f"{shown(name)} is not a feature of this signature"
                errors.append(FieldError(index, where, "type", message))
                continue
            if value is None:
                continue
            try:
                age = _age(value, now)
            except RuleViolation as violation:
                errors.append(FieldError(index, where, "type", f"'{name}': {violation.message}"))
                continue
            if name in self.max_age_s:
                ages[name] = age
        return ages

    def _stale_error(self, index: int | None, name: str, age: float) -> FieldError:
        limit = self.max_age_s[name]
        message = f"computed {_seconds(age)} s ago; the maximum age is {_seconds(limit)} s"
        return FieldError(index, name, "stale", message)


def freshness_of(signature: Signature) -> Freshness | None:
    """The freshness rules of ``signature``, kept on it; None when no feature declares max_age_s.

    None lets a caller skip freshness entirely for most models, at the cost of
    one dict lookup per request.
    """
    cache = signature.compiled_cache
    freshness = cache.get("freshness")
    if not isinstance(freshness, Freshness):
        freshness = cache["freshness"] = Freshness(signature)
    return freshness if freshness.max_age_s else None


def split_computed_at(records: list[Any]) -> list[object | None]:
    """Pop ``@computed_at`` from each record (in place); return them in order, None where absent.

    Call it before validating records, so the record validator never sees the
    reserved key. Items that are not objects are left for the validator to refuse.
    """
    times: list[object | None] = [None] * len(records)
    for index, record in enumerate(records):
        if isinstance(record, dict) and COMPUTED_AT_FIELD in record:
            times[index] = record.pop(COMPUTED_AT_FIELD)
    return times


def parse_time(value: object) -> float:
    """Read a time as Unix seconds: a finite number, or an ISO 8601 string with a timezone.

    Raises ``RuleViolation`` (rule ``type``) saying what is wrong with it.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
        if not math.isfinite(seconds):
            raise RuleViolation("type", f"{shown(value)} is not a finite Unix timestamp")
        return seconds
    if not isinstance(value, str):
        raise RuleViolation("type", f"expected {_TIME_EXAMPLE}, got {kind_of(value)}")
    try:
        # RFC 3339 allows a lowercase 't' and 'z'; fromisoformat reads only capitals.
        moment = datetime.fromisoformat(value.upper())
    except ValueError:
        raise RuleViolation("type", f"expected {_TIME_EXAMPLE}, got {shown(value)}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        message = f"{shown(value)} has no timezone; add Z or an offset such as +02:00"
        raise RuleViolation("type", message)
    try:
        return moment.timestamp()
    except OverflowError:
        raise RuleViolation("type", f"{shown(value)} is out of range") from None


def _age(value: object, now: float) -> float:
    """Seconds from ``value`` to ``now``; a time within the clock-skew allowance is age 0."""
    age = now - parse_time(value)
    if age < -CLOCK_SKEW_S:
        message = (
            f"computed {_seconds(-age)} s in the future "
            f"(clocks may disagree by at most {CLOCK_SKEW_S:g} s)"
        )
        raise RuleViolation("type", message)
    return max(age, 0.0)


def _seconds(value: float) -> str:
    """Format seconds for a message: whole seconds once the fraction stops mattering."""
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"
