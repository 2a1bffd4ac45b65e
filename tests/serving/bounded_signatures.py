"""Signatures whose bounds probe the v2 tensor checks (the contract and fast-path tests)."""

from __future__ import annotations

from keel.signature import Feature, Output, Signature

_INCOME = Feature(
    name="income",
    dtype="float",
    minimum=0,
    nullable=True,
    missing="indicator",
    missing_indicator=-1.0,
)
_SCORE = Output(name="score", dtype="float32", shape=[None, 1], kind="score")

FLOAT_SIGNATURE = Signature(
    features=[
        # Bounds that float32 cannot hold exactly: a float32 check must round them inward.
        Feature(name="share", dtype="float", minimum=0.1, maximum=0.3),
        Feature(name="free", dtype="float"),
        Feature(name="count", dtype="float", minimum=0, maximum=1e39),
        _INCOME,
        Feature(name="ratio", dtype="float", allow_nan=True),
    ],
    outputs=[_SCORE],
)
"""Five float features: inexact bounds, none, one past float32, an indicator, NaN allowed."""

INTEGER_SIGNATURE = Signature(
    features=[
        Feature(name="flag", dtype="float", minimum=0, maximum=1),
        Feature(name="level", dtype="float", minimum=-5, maximum=100),
        Feature(name="free", dtype="float"),
        _INCOME,
        Feature(name="ratio", dtype="float", allow_nan=True),
    ],
    outputs=[_SCORE],
)
"""The same shape with bounds that 0 and 1 satisfy, for integer and BOOL tensors."""
