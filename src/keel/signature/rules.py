"""The rules a value can break, by their stable short names, and how each is explained.

Every path into a model (JSON records, a dict of columns, a DataFrame) reports
violations with these names, so a client can branch on ``FieldError.rule``
without parsing messages.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Literal

Rule = Literal[
    "type",
    "required",
    "null",
    "nan",
    "minimum",
    "maximum",
    "level",
    "unknown_field",
    "not_a_record",
    "stale",
]
"""Stable names of the rules a request can break; clients may branch on them."""


class RuleViolation(Exception):
    """One value broke one rule; the caller knows which record and field it came from."""

    def __init__(self, rule: Rule, message: str) -> None:
        super().__init__(message)
        self.rule: Rule = rule
        self.message = message


# reprlib stops at a depth (shown as [...]) where repr() would follow a list nested a
# thousand deep, which a JSON body may hold, until the stack ran out (a 500).
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel = 3
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = 60


def shown(value: object) -> str:
    """Render a submitted value for an error message, cut short if it is long or deep."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: object) -> str:
    """Name the JSON-ish kind of a value for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    return type(value).__name__


REQUIRED_MESSAGE = "a value is required (the feature is not nullable)"
NULL_MESSAGE = "null is not accepted (the feature is not nullable)"
UNKNOWN_FIELD_MESSAGE = "not a feature of this signature"


def unknown_field_message(name: str, features: Iterable[str]) -> str:
    """Say ``name`` is no feature, and which feature it most likely misspells."""
    close = difflib.get_close_matches(name, list(features), n=1)
    return (
        f"{UNKNOWN_FIELD_MESSAGE}; did you mean {close[0]!r}?" if close else UNKNOWN_FIELD_MESSAGE
    )
