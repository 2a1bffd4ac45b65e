"""Signatures shared by the signature tests."""

from __future__ import annotations

import pytest

from keel.signature import Feature, ModelInput, Output, Signature


@pytest.fixture
def credit() -> Signature:
    """A small credit-scoring signature with one feature of each kind of rule."""
    return Signature(
        features=[
            Feature(name="age", dtype="int", minimum=18, maximum=120),
            Feature(
                name="income",
                dtype="float",
                minimum=0,
                nullable=True,
                missing="indicator",
                missing_indicator=-1.0,
            ),
            Feature(name="ratio", dtype="float", allow_nan=True),
            Feature(name="owner", dtype="bool"),
            Feature(name="region", dtype="categorical", levels=["north", "south", "east"]),
            Feature(
                name="tier",
                dtype="categorical",
                levels=["basic", "gold"],
                encoding="index",
                nullable=True,
                missing="indicator",
                missing_indicator="basic",
            ),
            Feature(
                name="employer",
                dtype="string",
                nullable=True,
                missing="indicator",
                missing_indicator="<none>",
            ),
        ],
        outputs=[
            Output(
                name="probabilities",
                dtype="float32",
                shape=[None, 2],
                kind="probability",
                labels=["repaid", "defaulted"],
            )
        ],
        inputs=[
            ModelInput(
                name="numeric",
                dtype="float32",
                features=["age", "income", "ratio", "owner", "region", "tier"],
            ),
            ModelInput(name="text", dtype="string", features=["employer"]),
        ],
    )


@pytest.fixture
def applicant() -> dict[str, object]:
    """One record the credit signature accepts."""
    return {
        "age": 40,
        "income": 52000.0,
        "ratio": 0.25,
        "owner": True,
        "region": "south",
        "tier": "gold",
        "employer": "Acme",
    }
