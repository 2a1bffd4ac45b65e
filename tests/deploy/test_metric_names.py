"""Rules and dashboard query only the metrics keel declares; the dashboard shows them all.

Declared here means the server's own families and the ones shadow mode, workers and
traces add.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from metric_names import metric_names_in_dashboard, metric_names_in_expr, metric_names_in_rules

from metric_contract import DECLARED_METRICS, SHADOW_METRICS, TRACE_METRICS, WORKER_METRICS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXPORTED = DECLARED_METRICS | SHADOW_METRICS | WORKER_METRICS | TRACE_METRICS


def test_alert_rules_query_only_declared_metrics() -> None:
    used = metric_names_in_rules(DEPLOY / "prometheus" / "alerts.yml")
    assert used, "no keel metric found in the rules: the extraction is broken"
    assert used - EXPORTED == set()


def test_dashboard_queries_only_declared_metrics() -> None:
    used = metric_names_in_dashboard(DEPLOY / "grafana" / "dashboard.json")
    assert used - EXPORTED == set()


def test_dashboard_shows_every_declared_metric() -> None:
    used = metric_names_in_dashboard(DEPLOY / "grafana" / "dashboard.json")
    assert EXPORTED - used == set()


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            "keel_model_ready == 0 and keel_model_loaded == 1",
            {"keel_model_ready", "keel_model_loaded"},
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(keel_request_duration_seconds_bucket[1m])))",
            {"keel_request_duration_seconds"},
        ),
        (
            "rate(keel_batch_size_sum[1m]) / rate(keel_batch_size_count[1m])",
            {"keel_batch_size"},
        ),
        # Recording rules are not keel's metrics, even when they embed one's name.
        ("model_version:keel_requests_errors:ratio_rate5m > 0.05", set()),
        # Label names and values are not metrics.
        (
            'count by (keel_version) (keel_build_info{keel_version="keel_x"})',
            {"keel_build_info"},
        ),
        (
            'keel_requests_total * on (keel_version) group_left (keel_numpy) up{job="keel"}',
            {"keel_requests_total"},
        ),
        ('label_replace(up, "x", "keel_fake", "", "")', set()),
    ],
)
def test_metric_names_in_expr(expr: str, names: set[str]) -> None:
    assert metric_names_in_expr(expr) == names
