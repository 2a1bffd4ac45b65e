"""A live server's /metrics exports exactly the metric families the rules and dashboard are held to.

``DECLARED_METRICS`` (tests/metric_contract.py) is the contract the alert
rules and the Grafana dashboard are checked against; this checks the server's side
of it, so that the three cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keel_server import ServerProcess

from keel.registry import Registry
from metric_contract import DECLARED_METRICS, PROCESS_METRICS

MODEL = "breast-cancer"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def declared_metrics() -> frozenset[str]:
    return DECLARED_METRICS


@pytest.fixture(scope="module")
def exposition(server: ServerProcess, demo_registry: Path) -> str:
    """The server's /metrics text after a little traffic, one request of it refused."""
    record: dict[str, Any] = dict(Registry(demo_registry).resolve(f"{MODEL}@production")
                                  .golden.inputs[0])  # fmt: skip
    path = f"/v1/models/{MODEL}/predict"
    with server.client() as client:
        for _ in range(3):
            assert client.post(path, json={"instances": [record]}).status_code == 200
        refused = client.post(path, json={"instances": [{**record, "mean_radius": -1.0}]})
        assert refused.status_code == 422
        response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def exported_families(text: str) -> set[str]:
    """Every metric family of an exposition, by the name the contract uses.

    A ``# TYPE`` line names a family even when it has no samples yet (prometheus_client
    prints HELP and TYPE for every family it collects); a sample with no TYPE line
    counts as its own family, a histogram's series as the histogram.
    """
    typed = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    untyped = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        family = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
        if name not in typed and family not in typed:
            untyped.add(name)
    return typed | untyped


def test_every_declared_metric_is_exported(
    exposition: str, declared_metrics: frozenset[str]
) -> None:
    assert declared_metrics - exported_families(exposition) == set()


def test_every_exported_keel_metric_is_declared(
    exposition: str, declared_metrics: frozenset[str]
) -> None:
    exported = {name for name in exported_families(exposition) if name.startswith("keel_")}
    assert exported, "no keel_ family found: the parsing is broken"
    assert exported - declared_metrics == set()


def test_the_standard_process_series_are_exported(exposition: str) -> None:
    assert PROCESS_METRICS - exported_families(exposition) == set()


def test_families_without_samples_still_name_themselves() -> None:
    """The contract above counts TYPE lines; an empty family must still print one."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

    class Empty(Collector):
        def collect(self) -> Iterator[Metric]:
            yield CounterMetricFamily("keel_example", "no samples", labels=["model"])
            yield GaugeMetricFamily("keel_example_gauge", "no samples", labels=["model"])

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Empty())
    text = generate_latest(registry).decode()
    assert exported_families(text) == {"keel_example_total", "keel_example_gauge"}
