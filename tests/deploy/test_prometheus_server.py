"""A real Prometheus scraping a fixed /metrics: keel's rules load, and the no-`for` alerts fire."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from prometheus_server import PrometheusServer

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"

# One version whose "label" output has collapsed and whose golden check failed;
# everything else about it is healthy.
METRICS = """\
# TYPE keel_model_loaded gauge
keel_model_loaded{model="m",model_version="v"} 1
# TYPE keel_model_ready gauge
keel_model_ready{model="m",model_version="v"} 1
# TYPE keel_golden_check_passed gauge
keel_golden_check_passed{model="m",model_version="v"} 0
# TYPE keel_environment_mismatch gauge
keel_environment_mismatch{model="m",model_version="v"} 0
# TYPE keel_prediction_collapse gauge
keel_prediction_collapse{model="m",model_version="v",output="label"} 1
keel_prediction_collapse{model="m",model_version="v",output="score"} 0
# TYPE keel_prediction_drift_status gauge
keel_prediction_drift_status{model="m",model_version="v",output="label"} 0
# TYPE keel_feature_drift_status gauge
keel_feature_drift_status{model="m",model_version="v",feature="age"} 0
keel_feature_drift_status{model="m",model_version="v",feature="income"} 0
# TYPE keel_feature_null_rate_spike gauge
keel_feature_null_rate_spike{model="m",model_version="v",feature="age"} 0
"""
EXPECTED_ALERTS = {"KeelPredictionCollapse", "KeelGoldenCheckFailed"}


class _MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = METRICS.encode()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean: Prometheus scrapes every second."""


@pytest.fixture(scope="module")
def metrics_target() -> Iterator[str]:
    """A loopback HTTP server answering GET /metrics with METRICS; yields host:port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, name="fixed-metrics", daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def prometheus(metrics_target: str) -> Iterator[PrometheusServer]:
    with PrometheusServer([metrics_target], rule_files=[ALERTS]) as server:
        server.wait_for_targets_up()
        yield server


def test_scrapes_the_target_with_job_and_instance(
    prometheus: PrometheusServer, metrics_target: str
) -> None:
    (sample,) = prometheus.query('keel_golden_check_passed{model="m"}')
    assert sample["metric"] == {
        "__name__": "keel_golden_check_passed",
        "job": "keel",
        "instance": metrics_target,
        "model": "m",
        "model_version": "v",
    }
    assert sample["value"][1] == "0"


def test_prediction_collapse_fires_without_waiting(prometheus: PrometheusServer) -> None:
    alert = prometheus.wait_for_alert(
        "KeelPredictionCollapse", {"model": "m", "model_version": "v", "output": "label"}
    )
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "Output label of m version v has collapsed"


def test_failed_golden_check_fires_without_waiting(prometheus: PrometheusServer) -> None:
    alert = prometheus.wait_for_alert("KeelGoldenCheckFailed", {"model": "m", "model_version": "v"})
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == "Model m version v failed its golden check"


def test_healthy_series_raise_no_alert(prometheus: PrometheusServer) -> None:
    # Once both expected alerts fire, every rule has been evaluated on the scraped series.
    for name in EXPECTED_ALERTS:
        prometheus.wait_for_alert(name)
    active = {(a["labels"]["alertname"], a["labels"].get("output")) for a in prometheus.alerts()}
    assert active == {("KeelPredictionCollapse", "label"), ("KeelGoldenCheckFailed", None)}


def alert_subjects(name: str, query: str) -> list[str]:
    """The labels an alert's annotations must name: what it is about."""
    if name == "KeelDown" or "keel_prediction_log_" in query:
        return ["instance"]  # the process, not a model
    if "keel_worker" in query:
        return ["instance", "worker"]  # one worker process of the server
    if "keel_shadow_" in query:
        return ["model", "candidate_version"]
    subjects = ["model", "model_version"]
    if "keel_feature_" in query:
        subjects.append("feature")
    if "keel_prediction_" in query:
        subjects.append("output")
    return subjects


def test_every_alert_has_a_severity_and_names_what_it_is_about(
    prometheus: PrometheusServer,
) -> None:
    alerting = [
        rule
        for group in prometheus.api("rules")["groups"]
        for rule in group["rules"]
        if rule["type"] == "alerting"
    ]
    assert alerting
    for rule in alerting:
        assert rule["labels"].get("severity") in ("critical", "warning"), rule["name"]
        for annotation in ("summary", "description"):
            for label in alert_subjects(rule["name"], rule["query"]):
                assert f"$labels.{label}" in rule["annotations"][annotation], (
                    rule["name"],
                    annotation,
                    label,
                )


def test_missing_prometheus_fails_and_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with (
        pytest.raises(pytest.fail.Exception, match="scripts/install-system-deps"),
        PrometheusServer([]),
    ):
        pass


def test_leaving_the_context_stops_prometheus() -> None:
    with PrometheusServer([]) as server:
        url = server.url
        assert httpx.get(f"{url}/-/ready").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/-/ready")
