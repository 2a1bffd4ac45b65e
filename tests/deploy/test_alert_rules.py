"""keel's Prometheus alert rules: valid for promtool, and every alert pinned by a unit test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rule_files import read_alert_rule_tests, read_rules

from prometheus_server import prometheus_tool

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = sorted(PROMETHEUS_DIR.glob("*.test.yml"))

# keel's drift window already integrates over time, the shadow agreement alert
# averages 30 minutes of rows, and the golden check and the environment comparison
# are facts about the loaded version: these alerts must fire at the first evaluation
# that sees them.
IMMEDIATE_ALERTS = {
    "KeelFeatureDrift",
    "KeelFeatureDriftWarning",
    "KeelPredictionDrift",
    "KeelPredictionDriftWarning",
    "KeelPredictionCollapse",
    "KeelFeatureNullRateSpike",
    "KeelGoldenCheckFailed",
    "KeelEnvironmentMismatch",
    "KeelShadowDisagreement",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alert_names() -> set[str]:
    return {rule.name for rule in read_rules(ALERTS) if rule.kind == "alert"}


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS.relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_example_prometheus_config_passes_promtool_check() -> None:
    result = promtool("check", "config", str((PROMETHEUS_DIR / "prometheus.yml").relative_to(REPO)))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, f"no *.test.yml in {PROMETHEUS_DIR}"
    result = promtool("test", "rules", *(str(path.relative_to(REPO)) for path in RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    fired = {
        test.alertname for path in RULE_TESTS for test in read_alert_rule_tests(path) if test.fires
    }
    assert alert_names() - fired == set()


def test_every_alert_has_a_unit_test_that_keeps_it_quiet() -> None:
    quiet = {
        test.alertname
        for path in RULE_TESTS
        for test in read_alert_rule_tests(path)
        if not test.fires
    }
    assert alert_names() - quiet == set()


def test_unit_tests_name_only_alerts_that_exist() -> None:
    tested = {test.alertname for path in RULE_TESTS for test in read_alert_rule_tests(path)}
    assert tested - alert_names() == set()


@pytest.mark.parametrize("name", sorted(IMMEDIATE_ALERTS))
def test_window_and_version_alerts_do_not_wait(name: str) -> None:
    (rule,) = [rule for rule in read_rules(ALERTS) if rule.name == name]
    assert rule.for_ in (None, "0s", "0m", "0")
