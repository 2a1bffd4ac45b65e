"""Tests for keel.signature.model_input: what an input tensor may declare."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from keel.signature import ModelInput


def test_input_lists_its_features_in_order() -> None:
    tensor = ModelInput(name="x", dtype="float32", features=["b", "a"])
    assert tensor.features == ("b", "a")


def test_input_without_features_is_refused() -> None:
    with pytest.raises(ValidationError):
        ModelInput(name="x", dtype="float32", features=[])


def test_input_listing_a_feature_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="more than once"):
        ModelInput(name="x", dtype="float32", features=["a", "a"])


def test_input_dtype_must_be_a_tensor_dtype() -> None:
    with pytest.raises(ValidationError):
        ModelInput.model_validate({"name": "x", "dtype": "float16", "features": ["a"]})
