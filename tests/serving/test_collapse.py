"""keel_prediction_collapse on a real server: 0 on real traffic, 1 soon after constant answers.

A model is made to answer a constant here the way it happens in production: an
upstream pipeline starts sending one cached default row for every request, so every
record is one and the same real record and the model's answers become identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keel_server import DRIFT_WINDOW, ServerProcess, send_records
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

MODEL = "breast-cancer"
OUTPUTS = {"label", "probabilities[malignant]", "probabilities[benign]"}
WINDOW_ROWS, MIN_ROWS, COLLAPSE_ROWS = (
    DRIFT_WINDOW[k] for k in ("WINDOW_ROWS", "MIN_ROWS", "COLLAPSE_ROWS")
)
# More than COLLAPSE_ROWS, so the recent-predictions check has judged real traffic.
NORMAL_ROWS = 250

Record = dict[str, Any]


def model_samples(server: ServerProcess, name: str) -> list[Sample]:
    """This model's samples of metric ``name`` on /metrics (a scrape flushes the window)."""
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("model") == MODEL
    ]


def collapse_by_output(server: ServerProcess) -> dict[str, float]:
    samples = model_samples(server, "keel_prediction_collapse")
    collapse = {sample.labels["output"]: sample.value for sample in samples}
    assert set(collapse) == OUTPUTS, samples
    return collapse


def window_rows(server: ServerProcess) -> float:
    (sample,) = model_samples(server, "keel_drift_window_rows")
    return sample.value


def test_held_out_traffic_leaves_every_output_uncollapsed(
    monitored_server: ServerProcess, held_out: list[Record]
) -> None:
    rng = np.random.default_rng(0)
    send_records(
        monitored_server, [held_out[i] for i in rng.integers(0, len(held_out), NORMAL_ROWS)]
    )
    assert collapse_by_output(monitored_server) == dict.fromkeys(OUTPUTS, 0.0)


def test_constant_answers_raise_collapse_within_collapse_rows_before_min_rows(
    monitored_server: ServerProcess, held_out: list[Record]
) -> None:
    send_records(monitored_server, [held_out[0]] * COLLAPSE_ROWS)
    assert collapse_by_output(monitored_server) == dict.fromkeys(OUTPUTS, 1.0)
    # Flagged from the recent predictions alone: the window is still too small to be
    # judged for drift (at most NORMAL_ROWS + COLLAPSE_ROWS rows, whatever ran first).
    assert window_rows(monitored_server) < MIN_ROWS
    drift = model_samples(monitored_server, "keel_feature_drift_status")
    assert drift
    assert all(sample.value == 0 for sample in drift)
