"""Field types shared by the schema models: names, and sequences frozen into tuples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

from pydantic import AfterValidator, StringConstraints

T = TypeVar("T")

Name = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.\-]*$", min_length=1, max_length=128),
]
"""A feature, output or input name: a letter or ``_`` first, then letters, digits, ``_ . -``."""

FrozenSequence = Annotated[Sequence[T], AfterValidator(tuple)]
"""A sequence that callers may pass as a list and that is stored as a tuple.

Tuples make a frozen model really immutable (a list inside one can still be
appended to) and hashable, which is what lets validators be cached per signature.
"""
