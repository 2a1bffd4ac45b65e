"""What the tests need from Prometheus rule files and promtool test files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml


class Rule(NamedTuple):
    """One alerting or recording rule: ``kind`` is "alert" or "record"."""

    kind: str
    name: str
    expr: str
    for_: str | None


class AlertRuleTest(NamedTuple):
    """One ``alert_rule_test`` entry: whether it expects ``alertname`` to fire at ``eval_time``."""

    alertname: str
    eval_time: str
    fires: bool


def read_rules(path: Path) -> list[Rule]:
    """The rules of a Prometheus rule file, in file order."""
    return [_rule(rule) for group in _load(path)["groups"] for rule in group["rules"]]


def read_alert_rule_tests(path: Path) -> list[AlertRuleTest]:
    """The ``alert_rule_test`` entries of a promtool test file, in file order."""
    return [
        AlertRuleTest(entry["alertname"], str(entry["eval_time"]), bool(entry.get("exp_alerts")))
        for test in _load(path)["tests"]
        for entry in test.get("alert_rule_test") or []
    ]


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _rule(rule: dict[str, Any]) -> Rule:
    kind = "alert" if "alert" in rule else "record"
    duration = rule.get("for")
    return Rule(kind, rule[kind], rule["expr"], None if duration is None else str(duration))
