"""End to end: a real server's drift window, scraped by a real Prometheus with keel's rules.

In-distribution traffic (the held-out split, which the model never saw) fires none of
the critical ML alerts; the same rows with one feature shifted and the optional feature
emptied in half the records fire exactly the drift and null-rate alerts they should,
and ``keel drift report`` shows the same window worst first.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import drifted_rows
import numpy as np
import pytest
from drifted_rows import SHIFTED, Record, resample
from keel_server import DRIFT_WINDOW, ServerProcess, send_records

from keel.examples import breast_cancer
from keel.monitoring.snapshot import ALERT, DriftSnapshot, worst_first
from prometheus_server import PrometheusServer
from support import run_keel

MODEL = "breast-cancer"
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"

# Small windows so a test fills one in a second: four blocks of 250 rows, judged from 500.
WINDOW_ROWS, MIN_ROWS, COLLAPSE_ROWS = (
    DRIFT_WINDOW[k] for k in ("WINDOW_ROWS", "MIN_ROWS", "COLLAPSE_ROWS")
)
SEED = 0

UNTOUCHED = "mean_radius"

# The critical ML alerts, and the null-rate one. Their `...Warning` siblings are left
# out on purpose: a window of resampled held-out rows may sit past the warning
# threshold (the rules tell warn, status 1, from alert, status 2), and that is no
# false alarm of what this test pins.
ML_ALERTS = ("KeelFeatureDrift", "KeelPredictionDrift", "KeelFeatureNullRateSpike",
             "KeelPredictionCollapse")  # fmt: skip
WAIT_S = 60  # generous: a loaded CI machine may scrape and evaluate late


@pytest.fixture(scope="module")
def prometheus(monitored_server: ServerProcess) -> Iterator[PrometheusServer]:
    """Prometheus scraping the server's /metrics every second, with keel's rules loaded."""
    target = monitored_server.url.removeprefix("http://")
    with PrometheusServer([target], rule_files=[ALERTS]) as server:
        server.wait_for_targets_up(timeout=WAIT_S)
        yield server


@pytest.fixture(scope="module")
def texture_std() -> float:
    return drifted_rows.texture_std()


def drifted(records: list[Record], texture_std: float, seed: int) -> list[Record]:
    """A window's worth of drifted held-out rows."""
    return drifted_rows.drifted(records, WINDOW_ROWS, texture_std, seed)


def wait_for_scrape(prometheus: PrometheusServer, promql: str, timeout: float = WAIT_S) -> float:
    """The scrape time (Unix seconds) of the newest sample ``promql`` selects; waits for one."""
    deadline = time.monotonic() + timeout
    while not (found := prometheus.query(f"timestamp({promql})")):
        assert time.monotonic() < deadline, f"Prometheus saw no {promql} in {timeout} s"
        time.sleep(0.2)
    return max(float(sample["value"][1]) for sample in found)


def wait_for_evaluations(
    prometheus: PrometheusServer, after: float, group: str = "keel-ml-signals"
) -> None:
    """Wait until ``group``'s rules have been evaluated twice on samples scraped at ``after``.

    Evaluation runs every second, so a last evaluation more than two seconds after
    the scrape means that at least two evaluations saw it.
    """
    deadline = time.monotonic() + WAIT_S
    while True:
        (rules,) = [g for g in prometheus.api("rules")["groups"] if g["name"] == group]
        if _unix_time(rules["lastEvaluation"]) > after + 2:
            break
        assert time.monotonic() < deadline, f"{group} not evaluated in {WAIT_S} s: {rules}"
        time.sleep(0.2)
    unhealthy = [rule for rule in rules["rules"] if rule["health"] != "ok"]
    assert not unhealthy, unhealthy


def _unix_time(rfc3339: str) -> float:
    # Prometheus gives nanoseconds; datetime takes at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


def firing(prometheus: PrometheusServer, name: str) -> list[dict[str, str]]:
    """The labels of every firing alert ``name`` of this model."""
    return [
        alert["labels"]
        for alert in prometheus.alerts()
        if alert["state"] == "firing"
        and alert["labels"]["alertname"] == name
        and alert["labels"].get("model") == MODEL
    ]


def ever_active(prometheus: PrometheusServer, selector: str) -> list[dict[str, Any]]:
    """Alerts matching ``selector`` that were pending or firing at any evaluation so far."""
    return prometheus.query(f"count_over_time(ALERTS{{{selector}}}[1h])")


def test_drift_and_null_alerts_fire_on_drifted_traffic_and_not_on_held_out_traffic(
    monitored_server: ServerProcess,
    prometheus: PrometheusServer,
    held_out: list[Record],
    texture_std: float,
) -> None:
    model = f'model="{MODEL}"'
    # Phase 1: a window of resampled held-out rows.
    send_records(monitored_server, resample(held_out, WINDOW_ROWS, np.random.default_rng(SEED)))
    scraped = wait_for_scrape(prometheus, f"keel_drift_window_rows{{{model}}} >= {WINDOW_ROWS}")
    wait_for_evaluations(prometheus, after=scraped)
    for name in ML_ALERTS:
        assert firing(prometheus, name) == [], name
    # Nor did any of them fire while the window filled (no `for:` hides a blip).
    alert_names = "|".join(ML_ALERTS)
    assert ever_active(prometheus, f'alertname=~"{alert_names}",{model}') == []

    # Phase 2: a whole window of drifted rows replaces the held-out ones.
    rows = drifted(held_out, texture_std, seed=SEED + 1)
    send_records(monitored_server, rows)
    nulls = sum(record[breast_cancer.OPTIONAL] is None for record in rows)
    optional = f'{model},feature="{breast_cancer.OPTIONAL}"'
    # The null counter reaching every null sent marks the first scrape of the full window.
    scraped = wait_for_scrape(prometheus, f"keel_feature_null_total{{{optional}}} >= {nulls}")
    wait_for_evaluations(prometheus, after=scraped)
    prometheus.wait_for_alert("KeelFeatureDrift", {"model": MODEL, "feature": SHIFTED})
    prometheus.wait_for_alert(
        "KeelFeatureNullRateSpike", {"model": MODEL, "feature": breast_cancer.OPTIONAL}
    )
    assert UNTOUCHED not in {labels["feature"] for labels in firing(prometheus, "KeelFeatureDrift")}
    untouched = f'alertname="KeelFeatureDrift",{model},feature="{UNTOUCHED}"'
    assert ever_active(prometheus, untouched) == []


@pytest.fixture(scope="module")
def drifted_window(
    monitored_server: ServerProcess, held_out: list[Record], texture_std: float
) -> None:
    """A window of drifted rows, for the report tests to read."""
    send_records(monitored_server, drifted(held_out, texture_std, seed=SEED + 2))


def test_drift_report_lists_the_alerting_columns_first(
    monitored_server: ServerProcess, drifted_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = report_rows(drift_report(monitored_server, monkeypatch))
    assert len(rows) == 30 + 3  # every feature, and every output column
    # Worst first: both columns at ALERT lead; a raised flag (the null spike) ranks
    # before PSI, so the emptied feature precedes the shifted one.
    assert rows[:2] == [
        (f"{breast_cancer.OPTIONAL} (feature)", "ALERT"),
        (f"{SHIFTED} (feature)", "ALERT"),
    ]
    assert all(status != "ALERT" for _, status in rows[2:]), rows


def test_drift_report_names_every_column_in_the_windows_worst_first_order(
    monitored_server: ServerProcess, drifted_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = report_rows(drift_report(monitored_server, monkeypatch))
    with monitored_server.client() as client:
        window = DriftSnapshot.model_validate(client.get(f"/v2/models/{MODEL}/drift").json())
    # Output columns are named like "probabilities[benign]": brackets a table must print.
    assert [name for name, _ in rows] == [f"{c.name} ({c.role})" for c in worst_first(window)]


def test_drift_report_json_is_the_servers_window(
    monitored_server: ServerProcess, drifted_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = json.loads(drift_report(monitored_server, monkeypatch, "--json"))
    with monitored_server.client() as client:
        window = client.get(f"/v2/models/{MODEL}/drift")
    assert window.status_code == 200
    assert report == window.json()
    assert report["status"] == ALERT


def drift_report(server: ServerProcess, monkeypatch: pytest.MonkeyPatch, *options: str) -> str:
    """What ``keel drift report`` prints about the server's window."""
    # Wide enough that Rich never wraps a column name onto two lines.
    monkeypatch.setenv("COLUMNS", "300")
    result = run_keel("drift", "report", MODEL, "--url", server.url, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def report_rows(table: str) -> list[tuple[str, str]]:
    """(column, status) of each row of a ``keel drift report`` table, top to bottom."""
    rows = []
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 3 and cells[1].endswith(("(feature)", "(prediction)")):
            rows.append((cells[1], cells[2]))
    assert rows, f"no rows in the report:\n{table}"
    return rows
