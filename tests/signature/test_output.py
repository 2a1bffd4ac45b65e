"""Tests for keel.signature.output: what an output may declare."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from keel.signature import Output


def test_probability_output_with_labels_matching_its_width() -> None:
    output = Output(
        name="p", dtype="float32", shape=[None, 2], kind="probability", labels=["no", "yes"]
    )
    assert output.shape == (None, 2)


@pytest.mark.parametrize(
    "spec",
    [
        {"shape": []},
        {"shape": [4, 2]},
        {"shape": [None, 0]},
        {"dtype": "int64"},
        {"labels": ["no", "yes", "maybe"]},
        {"labels": ["no", "no"]},
        {"kind": "regression", "labels": ["no", "yes"]},
    ],
)
def test_inconsistent_outputs_are_refused(spec: dict[str, Any]) -> None:
    base: dict[str, Any] = {
        "name": "p",
        "dtype": "float32",
        "shape": [None, 2],
        "kind": "probability",
        "labels": ["no", "yes"],
    }
    with pytest.raises(ValidationError, match=r"'p'"):
        Output(**{**base, **spec})


def test_label_output_may_be_strings() -> None:
    output = Output(name="label", dtype="string", shape=[None], kind="label", labels=["a", "b"])
    assert output.labels == ("a", "b")
