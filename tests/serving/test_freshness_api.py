"""Feature freshness over HTTP: ages observed per feature, stale values refused or counted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from keel_server import ServerProcess, start_server
from prometheus_client.parser import text_string_to_metric_families

from keel.publishing import publish
from keel.registry import Registry
from keel.signature import Signature
from support import OnnxModel

MODEL = "fresh-cancer"
# mean_radius comes from a live lookup (at most an hour old, or the record is refused);
# mean_texture from a nightly batch whose staleness is only counted.
LIMITS = {"mean_radius": (3600.0, "reject"), "mean_texture": (60.0, "count")}


def _with_limits(signature: Signature) -> Signature:
    features = [
        f.model_copy(update={"max_age_s": LIMITS[f.name][0], "on_stale": LIMITS[f.name][1]})
        if f.name in LIMITS
        else f
        for f in signature.features
    ]
    return Signature.model_validate(
        {**signature.model_dump(mode="json"), "features": [f.model_dump() for f in features]}
    )


@pytest.fixture(scope="module")
def server(
    breast_cancer_model: OnnxModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("fresh")
    registry = Registry(root / "registry")
    publish(
        breast_cancer_model.path,
        name=MODEL,
        signature=_with_limits(breast_cancer_model.signature),
        registry=registry,
        reference=breast_cancer_model.valid_frame,
        alias="production",
        source_dir=root,
        allow_untracked=True,
    )
    running = start_server(root / "registry", (f"{MODEL}@production",), root / "server.log")
    running.wait_ready()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def record(breast_cancer_model: OnnxModel) -> dict[str, Any]:
    return dict(breast_cancer_model.valid_frame.iloc[0].to_dict())


def _predict(server: ServerProcess, records: list[dict[str, Any]]) -> Any:
    with server.client() as client:
        return client.post(f"/v1/models/{MODEL}/predict", json={"instances": records})


def _metric(server: ServerProcess, name: str, feature: str) -> float:
    with server.client() as client:
        text = client.get("/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels.get("feature") == feature
    )


def test_fresh_features_are_served_and_their_ages_observed(
    server: ServerProcess, record: dict[str, Any]
) -> None:
    before = _metric(server, "keel_feature_age_seconds_count", "mean_radius")
    now = time.time()
    fresh = {**record, "@computed_at": {"mean_radius": now - 30, "mean_texture": now - 5}}
    response = _predict(server, [fresh, record])
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2
    # One record said when it was computed, the other did not: one age observed.
    assert _metric(server, "keel_feature_age_seconds_count", "mean_radius") == before + 1


def test_a_stale_feature_under_reject_is_refused_naming_record_field_and_age(
    server: ServerProcess, record: dict[str, Any]
) -> None:
    two_hours_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    stale = {**record, "@computed_at": {"mean_radius": two_hours_ago}}
    response = _predict(server, [record, stale])
    assert response.status_code == 422
    (detail,) = response.json()["details"]
    assert (detail["index"], detail["field"], detail["rule"]) == (1, "mean_radius", "stale")
    assert "3600" in detail["message"]


def test_a_stale_feature_under_count_is_served_and_counted(
    server: ServerProcess, record: dict[str, Any]
) -> None:
    before = _metric(server, "keel_feature_stale_total", "mean_texture")
    stale = {**record, "@computed_at": {"mean_texture": time.time() - 600}}
    assert _predict(server, [stale]).status_code == 200
    assert _metric(server, "keel_feature_stale_total", "mean_texture") == before + 1


def test_stale_and_invalid_values_are_reported_together(
    server: ServerProcess, record: dict[str, Any]
) -> None:
    bad = {**record, "mean_area": -1.0, "@computed_at": {"mean_radius": time.time() - 7200}}
    response = _predict(server, [bad])
    assert response.status_code == 422
    rules = {(d["field"], d["rule"]) for d in response.json()["details"]}
    assert rules == {("mean_radius", "stale"), ("mean_area", "minimum")}


def test_v2_requests_carry_times_in_the_computed_at_parameter(
    server: ServerProcess, record: dict[str, Any], breast_cancer_model: OnnxModel
) -> None:
    values = [float(record[f]) for f in breast_cancer_model.signature.feature_names]
    body = {
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": values}],
        "parameters": {"computed_at": {"mean_radius": time.time() - 7200}},
    }
    with server.client() as client:
        refused = client.post(f"/v2/models/{MODEL}/infer", json=body)
        body["parameters"] = {"computed_at": {"mean_radius": time.time() - 10}}
        served = client.post(f"/v2/models/{MODEL}/infer", json=body)
    assert refused.status_code == 422
    assert refused.json()["details"][0]["rule"] == "stale"
    assert served.status_code == 200, served.text


def test_openapi_documents_the_computed_at_key_metrics_and_drift(server: ServerProcess) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
    body = spec["paths"][f"/v1/models/{MODEL}/predict"]["post"]["requestBody"]
    record = body["content"]["application/json"]["schema"]["properties"]["instances"]["items"]
    assert set(record["properties"]["@computed_at"]["properties"]) == set(LIMITS)
    assert "/metrics" in spec["paths"]
    assert f"/v2/models/{MODEL}/drift" in spec["paths"]
