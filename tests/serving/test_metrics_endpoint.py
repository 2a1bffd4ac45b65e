"""GET /metrics: model series labelled with their version, cardinality bounded by what is served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from keel_server import ServerProcess
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from keel.registry import Registry
from keel.serving.self_warmup import REQUESTS_PER_ROUTE

MODEL = "breast-cancer"


def _samples(server: ServerProcess) -> list[Sample]:
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [s for family in text_string_to_metric_families(response.text) for s in family.samples]


def _found(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    found = _found(samples, name, **labels)
    assert found, f"no sample {name} with {labels}"
    return sum(found)


@pytest.fixture(scope="module")
def production(demo_registry: Path) -> tuple[str, dict[str, Any]]:
    metadata = Registry(demo_registry).resolve(f"{MODEL}@production")
    return metadata.version.replace("/", "-"), dict(metadata.golden.inputs[0])


def test_requests_refusals_and_batches_are_counted_per_version(
    server: ServerProcess, production: tuple[str, dict[str, Any]]
) -> None:
    label, record = production
    version = {"model": MODEL, "model_version": label}
    before = _samples(server)
    ok_before = sum(
        _found(before, "keel_requests_total", **version, endpoint="records", status="200")
    )
    path = f"/v1/models/{MODEL}/predict"
    with server.client() as client:
        for _ in range(5):
            assert client.post(path, json={"instances": [record]}).status_code == 200
        bad = {**record, "mean_radius": -1.0, "made_up_field": 1}
        assert client.post(path, json={"instances": [bad]}).status_code == 422
        assert client.post("/v1/models/no-such-model/predict", json={}).status_code == 404
    after = _samples(server)
    ok = _value(after, "keel_requests_total", **version, endpoint="records", status="200")
    assert ok - ok_before == 5
    assert _value(after, "keel_requests_total", **version, endpoint="records", status="422") >= 1
    assert _value(after, "keel_requests_rejected_total", **version, reason="invalid") >= 1
    failures = "keel_validation_failures_total"
    assert _value(after, failures, **version, field="mean_radius", rule="minimum") >= 1
    # A client's made-up field name never becomes a label value.
    assert _value(after, failures, **version, field="(undeclared)", rule="unknown_field") >= 1
    assert not [s for s in after if "made_up_field" in s.labels.values()]
    assert not [s for s in after if s.labels.get("model") == "no-such-model"]
    assert _value(after, "keel_request_duration_seconds_count", **version, endpoint="records") >= 6
    assert _value(after, "keel_batch_size_count", **version) >= 5
    assert _value(after, "keel_queue_duration_seconds_count", **version) >= 5
    assert _value(after, "keel_inference_duration_seconds_count", **version) >= 5


def test_lifecycle_and_process_series(
    server: ServerProcess, production: tuple[str, dict[str, Any]]
) -> None:
    label, _ = production
    version = {"model": MODEL, "model_version": label}
    samples = _samples(server)
    assert _value(samples, "keel_model_ready", **version) == 1
    assert _value(samples, "keel_model_loaded", **version) == 1
    assert _value(samples, "keel_golden_check_passed", **version) == 1
    assert _value(samples, "keel_environment_mismatch", **version) == 0
    assert _value(samples, "keel_model_load_duration_seconds", **version) > 0
    assert _value(samples, "keel_model_warmup_duration_seconds", **version) > 0
    assert _value(samples, "keel_process_resident_memory_bytes") > 10 * 2**20
    (info,) = [s for s in samples if s.name == "keel_build_info"]
    assert info.labels["keel_version"]
    assert info.labels["onnxruntime_version"] != "absent"


def test_every_model_series_names_its_version(server: ServerProcess) -> None:
    samples = _samples(server)
    modelled = [s for s in samples if "model" in s.labels]
    assert modelled
    assert all(s.labels.get("model_version") for s in modelled)
    assert all(s.name.startswith("keel_") for s in samples)


def test_every_route_was_warmed_over_http_before_ready_and_kept_out_of_drift(
    server: ServerProcess,
) -> None:
    samples = _samples(server)
    digits = {"model": "digits-mlp"}
    for endpoint in ("records", "v2_infer"):
        served = _value(samples, "keel_requests_total", **digits, endpoint=endpoint, status="200")
        assert served >= REQUESTS_PER_ROUTE
    assert _value(samples, "keel_drift_window_rows", **digits) == 0
