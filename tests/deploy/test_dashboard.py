"""The Grafana dashboard: its variables select keel's models, and every query is valid PromQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from metric_names import dashboard_queries

from prometheus_server import PrometheusServer

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The series the $model_version and $candidate_version variables are listed from.
VERSION_SOURCES = ("keel_model_ready", "keel_shadow_candidate_ready")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found += [panel, *panel.get("panels", [])]
    return found


def variables() -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard()["templating"]["list"]}


def test_dashboard_has_a_recent_schema_and_unique_panel_ids() -> None:
    assert dashboard()["schemaVersion"] >= 36
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))


def test_datasource_model_and_version_are_template_variables() -> None:
    found = variables()
    assert found["datasource"]["type"] == "datasource"
    assert found["datasource"]["query"] == "prometheus"
    assert found["model"]["query"]["query"] == "label_values(keel_model_ready, model)"
    assert found["model_version"]["query"]["query"] == (
        'label_values(keel_model_ready{model=~"$model"}, model_version)'
    )


def test_every_query_panel_uses_the_datasource_variable() -> None:
    for panel in panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]


def test_shadow_candidate_version_is_a_template_variable() -> None:
    found = variables()["candidate_version"]
    assert found["query"]["query"] == (
        'label_values(keel_shadow_candidate_ready{model=~"$model"}, candidate_version)'
    )
    assert found["includeAll"]
    assert found["allValue"] == ".*"


def test_rows_group_golden_signals_lifecycle_ml_signals_shadow_and_traces() -> None:
    rows = [panel["title"] for panel in dashboard()["panels"] if panel["type"] == "row"]
    assert rows == ["Golden signals", "Lifecycle", "ML signals", "Shadow", "Traces"]


def test_the_latency_p99_shows_the_exemplars_that_lead_to_traces() -> None:
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == "Request latency p50 / p99"]
    (p99,) = [t for t in panel["targets"] if t["expr"].startswith("histogram_quantile(0.99")]
    assert p99["exemplar"] is True


def test_panels_that_filter_by_model_filter_by_version_too() -> None:
    # Shadow series name the candidate's version, not the primary's; the version
    # variables themselves are listed per model.
    for query in dashboard_queries(DASHBOARD):
        if "$model" in query.replace("$model_version", ""):
            versioned = "$model_version" in query or "$candidate_version" in query
            assert versioned or query.startswith(VERSION_SOURCES), query


@pytest.fixture(scope="module")
def prometheus() -> Iterator[PrometheusServer]:
    with PrometheusServer([]) as server:
        yield server


def as_promql(query: str) -> str:
    """A dashboard query with Grafana's variables replaced as Grafana would."""
    query = query.replace("$__rate_interval", "1m").replace("$__interval", "1m")
    return re.sub(r"\$\{?(\w+)\}?", ".*", query)


@pytest.mark.parametrize("query", dashboard_queries(DASHBOARD))
def test_query_is_valid_promql(prometheus: PrometheusServer, query: str) -> None:
    prometheus.query(as_promql(query))
