"""GET /metrics: model series labelled with their version, cardinality bounded by what is served."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from keel_server import ServerProcess
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from keel.registry import Registry
from keel.web.self_warmup import REQUESTS_PER_ROUTE

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
    assert all(s.name.startswith(("keel_", "process_")) for s in samples)


def test_the_standard_process_series_describe_this_process(server: ServerProcess) -> None:
    samples = _samples(server)
    started = _value(samples, "process_start_time_seconds")
    assert time.time() - 600 < started <= time.time()
    assert _value(samples, "process_cpu_seconds_total") > 0
    assert 0 < _value(samples, "process_open_fds") <= _value(samples, "process_max_fds")
    assert _value(samples, "process_resident_memory_bytes") > 10 * 2**20
    assert _value(samples, "process_virtual_memory_bytes") > 0
    # Each series once: no model labels, no second copy under another collector.
    assert len(_found(samples, "process_start_time_seconds")) == 1


def test_warm_up_requests_are_counted_apart_from_traffic(server: ServerProcess) -> None:
    """No client has called digits-mlp: its only requests were the server's own warm-up."""
    samples = _samples(server)
    digits = {"model": "digits-mlp"}
    for endpoint in ("records", "v2_infer"):
        warmed = _value(samples, "keel_warmup_requests_total", **digits, endpoint=endpoint)
        assert warmed == REQUESTS_PER_ROUTE
        assert _found(samples, "keel_warmup_requests_total", **digits, endpoint=endpoint) == [
            REQUESTS_PER_ROUTE
        ], "every warm-up request should have been answered 200"
    for traffic in ("keel_requests_total", "keel_request_duration_seconds_count"):
        assert not _found(samples, traffic, **digits), traffic
    for per_call in ("keel_batch_size_count", "keel_inference_duration_seconds_count"):
        assert _value(samples, per_call, **digits) == 0, per_call
    assert _value(samples, "keel_drift_window_rows", **digits) == 0
    # Every served version, the one only reachable by header included, was warmed.
    warmed_versions = {
        s.labels["model_version"]
        for s in samples
        if s.name == "keel_warmup_requests_total" and s.labels["model"] == MODEL
    }
    assert len(warmed_versions) == 2


def test_entropy_is_one_series_per_probability_output(
    server: ServerProcess, production: tuple[str, dict[str, Any]]
) -> None:
    label, record = production
    version = {"model": MODEL, "model_version": label}
    with server.client() as client:
        response = client.post(f"/v1/models/{MODEL}/predict", json={"instances": [record] * 4})
        assert response.status_code == 200
    deadline = time.monotonic() + 10
    while not _found(samples := _samples(server), "keel_prediction_entropy", **version):
        assert time.monotonic() < deadline, "no entropy series: the window took no rows"
        time.sleep(0.05)
    entropy = [s for s in samples if s.name == "keel_prediction_entropy" and
               version.items() <= s.labels.items()]  # fmt: skip
    # breast-cancer has one probability output of two classes, and a label output.
    assert [s.labels["output"] for s in entropy] == ["probabilities"]
    assert 0.0 <= entropy[0].value <= math.log(2)
