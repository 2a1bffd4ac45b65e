"""The keel metric names that the PromQL of the alert rules and the dashboard refers to.

A name is reported as keel exposes it: a histogram's ``_bucket``, ``_sum`` and
``_count`` series count as the histogram, and recording-rule names (``level:metric:op``,
or any name a ``record:`` defines) are not metrics keel exposes, so they are left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rule_files import read_rules

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_MATCHERS = re.compile(r"\{[^}]*\}")
# Label names in grouping and vector matching clauses: `by (keel_version)` names a label.
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*[a-zA-Z_]\w*\s*\)\s*$", re.S)


def metric_names_in_expr(expr: str) -> set[str]:
    """The ``keel_*`` metric names a PromQL expression selects."""
    text = _STRING.sub('""', expr)
    text = _LABEL_MATCHERS.sub("", text)
    text = _LABEL_LISTS.sub("", text)
    names = set()
    for token in _IDENTIFIER.findall(text):
        if ":" in token or not token.startswith("keel_"):
            continue
        names.add(_without_histogram_suffix(token))
    return names


def metric_names_in_rules(path: Path) -> set[str]:
    """The ``keel_*`` metrics the rules of a Prometheus rule file query."""
    rules = read_rules(path)
    recorded = {rule.name for rule in rules if rule.kind == "record"}
    names = set().union(*(metric_names_in_expr(rule.expr) for rule in rules))
    return names - recorded


def metric_names_in_dashboard(path: Path) -> set[str]:
    """The ``keel_*`` metrics a Grafana dashboard's panels and template variables query."""
    return set().union(*(metric_names_in_expr(expr) for expr in dashboard_queries(path)))


def dashboard_queries(path: Path) -> list[str]:
    """The PromQL of every panel target and template variable of a Grafana dashboard.

    A ``label_values(selector, label)`` variable contributes its selector.
    """
    dashboard = json.loads(path.read_text())
    queries = [
        target["expr"]
        for panel in _panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        match = _LABEL_VALUES.match(query or "")
        queries.append(match["selector"] if match else query)
    return queries


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def _without_histogram_suffix(name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
