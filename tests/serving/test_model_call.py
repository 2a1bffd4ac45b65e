"""The check every API's outputs pass: NaN and the infinities are the model's failure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from keel.errors import NonFiniteOutput, RuntimeFailure
from keel.monitoring.metrics import ServingMetrics
from keel.serving.http_errors import error_reply
from keel.serving.model_call import refuse_non_finite


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("rows", [1, 64, 1000], ids=["one-row", "64-rows", "1000-rows"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_a_nan_or_infinite_output_is_refused_naming_the_output(
    bad: float, rows: int, dtype: Any
) -> None:
    probabilities = np.full((rows, 2), 0.5, dtype=dtype)
    probabilities[rows // 2, 1] = bad
    outputs = {"label": np.zeros(rows, np.int64), "probabilities": probabilities}
    with pytest.raises(
        NonFiniteOutput, match="m@production returned NaN or infinity in output 'probabilities'"
    ):
        refuse_non_finite("m@production", outputs)


def test_finite_outputs_pass_even_when_their_sum_overflows() -> None:
    outputs = {"score": np.array([[1.7e308], [1.7e308]]), "label": np.array(["a", "b"], object)}
    refuse_non_finite("m@production", outputs)


def test_the_refusal_is_a_500_model_failure_counted_by_reason() -> None:
    error = NonFiniteOutput("m@production returned NaN or infinity in output 'score'")
    assert isinstance(error, RuntimeFailure)
    reply = error_reply(error)
    assert reply.status == 500
    assert b"NaN" not in reply.body
    metrics = ServingMetrics(["x"])
    metrics.refused(error)
    assert metrics.rejected == {"nonfinite_output": 1}
