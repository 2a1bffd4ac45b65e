"""NaN and the infinities in a model's outputs are its failure: the batcher's check, every API."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from keel.errors import NonFiniteOutput, RuntimeFailure
from keel.monitoring.metrics import ServingMetrics
from keel.serving.batcher import non_finite_refusal
from keel.web.http_errors import error_reply


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rows", [1, 64, 1000], ids=["one-row", "64-rows", "1000-rows"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_nan_or_infinite_output_is_refused_naming_the_output(
    bad: float, rows: int, dtype: Any
) -> None:
    probabilities = np.full((rows, 2), 0.5, dtype=dtype)
    probabilities[rows // 2, 1] = bad
    outputs = {"label": np.zeros(rows, np.int64), "probabilities": probabilities}
    refusal = non_finite_refusal("m@production", outputs)
    assert isinstance(refusal, NonFiniteOutput)
    assert str(refusal) == (
        "m@production returned NaN or infinity in output 'probabilities'; the prediction is refused"
    )


def test_finite_outputs_pass_even_when_their_sum_overflows() -> None:
    outputs = {"score": np.array([[1.7e308], [1.7e308]]), "label": np.array(["a", "b"], object)}
    assert non_finite_refusal("m@production", outputs) is None


def test_the_refusal_is_a_500_model_failure_counted_by_reason() -> None:
    error = NonFiniteOutput("m@production returned NaN or infinity in output 'score'")
    assert isinstance(error, RuntimeFailure)
    reply = error_reply(error)
    assert reply.status == 500
    assert b"NaN" not in reply.body
    metrics = ServingMetrics(["x"])
    metrics.refused(error)
    assert metrics.rejected == {"nonfinite_output": 1}
