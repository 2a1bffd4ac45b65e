"""Several workers' metric families as the server's: sums exact, gauges as their owner says."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from keel.monitoring.exposition import add_histogram, families_text
from keel.monitoring.merging import WeightedMean, continued, family_data, merge_families
from keel.monitoring.metrics import Histogram


def _worker(requests: int, depth: float, ready: float, memory: float, latency: list[int]):  # type: ignore[no-untyped-def]
    counter = CounterMetricFamily("keel_requests", "Requests.", labels=["model"])
    counter.add_metric(["m"], requests)
    histogram = HistogramMetricFamily("keel_latency_seconds", "Latency.", labels=["model"])
    buckets = [("0.1", latency[0]), ("+Inf", latency[0] + latency[1])]
    histogram.add_metric(["m"], buckets, sum_value=0.05 * sum(latency))
    queue = GaugeMetricFamily("keel_queue_depth", "Depth.", labels=["model"])
    queue.add_metric(["m"], depth)
    model_ready = GaugeMetricFamily("keel_model_ready", "Ready.", labels=["model"])
    model_ready.add_metric(["m"], ready)
    rss = GaugeMetricFamily("keel_process_resident_memory_bytes", "Memory.")
    rss.add_metric([], memory)
    unnamed = GaugeMetricFamily("keel_something_new", "No rule yet.")
    unnamed.add_metric([], 7.0)
    # As it travels between workers.
    return orjson.loads(
        orjson.dumps(family_data([counter, histogram, queue, model_ready, rss, unnamed]))
    )


RULES = {"keel_queue_depth": "sum", "keel_model_ready": "min"}


def test_counters_and_histograms_add_up_gauges_follow_their_rule() -> None:
    merged = merge_families(
        [("0", _worker(3, 2, 1, 100, [1, 2])), ("1", _worker(4, 5, 0, 200, [3, 0]))], RULES
    )
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in merged for s in f.samples
    }
    assert samples["keel_requests_total", (("model", "m"),)] == 7
    assert samples["keel_latency_seconds_bucket", (("le", "0.1"), ("model", "m"))] == 4
    assert samples["keel_latency_seconds_bucket", (("le", "+Inf"), ("model", "m"))] == 6
    assert samples["keel_latency_seconds_count", (("model", "m"),)] == 6
    assert math.isclose(samples["keel_latency_seconds_sum", (("model", "m"),)], 0.3)
    assert samples["keel_queue_depth", (("model", "m"),)] == 7
    assert samples["keel_model_ready", (("model", "m"),)] == 0
    # One process's own figure, and a gauge no owner named: kept apart, per worker.
    assert samples["keel_process_resident_memory_bytes", (("worker", "0"),)] == 100
    assert samples["keel_process_resident_memory_bytes", (("worker", "1"),)] == 200
    assert samples["keel_something_new", (("worker", "1"),)] == 7


def _shadow_worker(agreement: float | None, rows: int) -> list[dict[str, Any]]:
    share = GaugeMetricFamily("keel_shadow_agreement", "Share.", labels=["model"])
    behind = GaugeMetricFamily("keel_shadow_agreement_rows", "Rows.", labels=["model"])
    if agreement is not None:
        share.add_metric(["m"], agreement)
        behind.add_metric(["m"], rows)
    return orjson.loads(orjson.dumps(family_data([share, behind])))


def test_a_weighted_gauge_weighs_each_worker_by_the_rows_behind_its_value() -> None:
    rules = {
        "keel_shadow_agreement": WeightedMean("keel_shadow_agreement_rows"),
        "keel_shadow_agreement_rows": "sum",
    }
    # 1000 rows at 0.9 and 10 rows at 0.0 (a worker just restarted): 0.891, not 0.45.
    merged = merge_families(
        [("0", _shadow_worker(0.9, 1000)), ("1", _shadow_worker(0.0, 10)),
         ("2", _shadow_worker(None, 0))],
        rules,
    )  # fmt: skip
    samples = {s.name: s.value for f in merged for s in f.samples}
    assert samples["keel_shadow_agreement"] == pytest.approx(900 / 1010)
    assert samples["keel_shadow_agreement_rows"] == 1010
    # A worker that sent no weight for its value: none outweighs another.
    unweighed = _shadow_worker(0.2, 0)
    unweighed[1]["samples"] = []
    (share, _) = merge_families([("0", unweighed), ("1", _shadow_worker(0.4, 0))], rules)
    assert share.samples[0].value == pytest.approx(0.3)


def test_the_merged_families_are_valid_exposition_text() -> None:
    merged = merge_families([("0", _worker(1, 0, 1, 1, [1, 0]))], RULES)
    body, content_type = families_text(merged)
    text = body.decode()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert "# TYPE keel_requests_total counter" in text
    assert 'keel_requests_total{model="m"} 1.0' in text
    assert 'keel_latency_seconds_bucket{le="+Inf",model="m"} 1.0' in text


def test_a_value_json_cannot_hold_travels_as_text() -> None:
    gauge = GaugeMetricFamily("keel_model_ready", "Ready.")
    gauge.add_metric([], float("nan"))
    data = orjson.loads(orjson.dumps(family_data([gauge])))
    (family,) = merge_families([("0", data)], {"keel_model_ready": "max"})
    assert math.isnan(family.samples[0].value)


def _report(index: int, pid: int, **counts: float) -> dict[str, Any]:
    """One worker's figures as it sends them: a counter and a histogram per endpoint."""
    labels = ["model", "model_version", "endpoint"]
    counter = CounterMetricFamily("keel_requests", "Requests.", labels=labels)
    histogram = HistogramMetricFamily("keel_latency_seconds", "Latency.", labels=labels)
    for endpoint, total in counts.items():
        counter.add_metric(["m", "v1", endpoint], total)
        buckets = [("0.1", total / 2), ("+Inf", total)]
        histogram.add_metric(["m", "v1", endpoint], buckets, sum_value=total / 10)
    data = orjson.loads(orjson.dumps(family_data([counter, histogram])))
    # Later processes start later: the pid stands in for the start time here.
    return {"index": index, "process": str(pid), "started": float(pid), "families": data}


def _scrape(memory: dict[str, Any], *reports: dict[str, Any]) -> dict[str, float]:
    """What the server exposes for these reports: sample name (and le) to value."""
    families = merge_families([(str(r["index"]), r["families"]) for r in reports], {})
    continued(families, reports, memory, {})
    return {
        f"{s.name}{s.labels.get('le', '')}:{s.labels['endpoint']}": s.value
        for family in families
        for s in family.samples
    }


def test_a_worker_that_dies_keeps_what_it_reported_and_its_successor_adds_to_it() -> None:
    memory: dict[str, Any] = {}
    first = _scrape(memory, _report(0, 100, records=10), _report(1, 200, records=20))
    assert first["keel_requests_total:records"] == 30
    # Worker 1 died and was started again (pid 201) before the next scrape: it reports
    # 2, the survivor 15. Nothing the dead one reported is lost, nor counted twice.
    later = _scrape(memory, _report(0, 100, records=15), _report(1, 201, records=2))
    assert later["keel_requests_total:records"] == 37
    assert (
        later["keel_latency_seconds_bucket0.1:records"]
        <= later["keel_latency_seconds_bucket+Inf:records"]
    )
    assert later["keel_latency_seconds_count:records"] == 37


def test_a_series_only_the_dead_worker_counted_stays() -> None:
    memory: dict[str, Any] = {}
    _scrape(memory, _report(0, 100, records=50), _report(1, 200, v2_infer=50))
    # Worker 1 is gone, not yet back: what it reported stands.
    after = _scrape(memory, _report(0, 100, records=60))
    assert after["keel_requests_total:records"] == 60
    assert after["keel_requests_total:v2_infer"] == 50


def test_two_scrapes_stored_out_of_order_give_the_same_counts() -> None:
    memory: dict[str, Any] = {}
    older = (_report(0, 100, records=10), _report(1, 200, records=20))
    newer = (_report(0, 100, records=12), _report(1, 201, records=1))
    _scrape(memory, *newer)
    # The older scrape stores last: worker 0's lower count changes nothing, and worker 1's
    # old process (200, gone since) adds what it had counted, as in the right order.
    assert _scrape(memory, *older)["keel_requests_total:records"] == 12 + 20 + 1
    in_order: dict[str, Any] = {}
    _scrape(in_order, *older)
    assert _scrape(in_order, *newer)["keel_requests_total:records"] == 12 + 20 + 1


def test_a_series_of_a_version_no_longer_served_is_forgotten() -> None:
    memory: dict[str, Any] = {}
    _scrape(memory, _report(0, 100, records=5))
    counter = CounterMetricFamily("keel_requests", "Requests.", labels=["model", "model_version"])
    counter.add_metric(["m", "v2"], 3)
    data = orjson.loads(orjson.dumps(family_data([counter])))
    report = {"index": 0, "process": "100", "started": 100.0, "families": data}
    families = merge_families([("0", report["families"])], {})
    continued(families, [report], memory, {})
    assert [s.labels["model_version"] for f in families for s in f.samples] == ["v2"]
    assert all(labels.get("model_version") == "v2" for _, _, labels in memory["series"].values())


def test_the_newest_exemplar_of_each_bucket_goes_through_the_merge_and_the_continuation() -> None:
    first = Histogram([0.1, 1.0])
    first.observe_traced(0.05, "a" * 32)
    second = Histogram([0.1, 1.0])
    second.observe_traced(0.07, "b" * 32)
    second.observe(0.5)
    workers = []
    for index, histogram in enumerate((first, second)):
        family = HistogramMetricFamily("keel_latency_seconds", "latency", labels=["model"])
        add_histogram(family, ["m"], histogram)
        workers.append((str(index), family_data([family])))
    merged = merge_families(workers, RULES)
    figures = [
        {"index": index, "process": 100 + int(index), "started": 1.0, "families": data}
        for index, data in workers
    ]
    continued(merged, figures, {}, RULES)
    buckets = {
        sample.labels["le"]: sample
        for sample in merged[0].samples
        if sample.name == "keel_latency_seconds_bucket"
    }
    assert buckets["0.1"].value == 2
    # The newer of the two workers' exemplars of that bucket (they were taken in order).
    assert buckets["0.1"].exemplar is not None
    assert buckets["0.1"].exemplar.labels == {"trace_id": "b" * 32}
    assert buckets["1.0"].exemplar is None
    body, content_type = families_text(merged, openmetrics=True)
    assert content_type.startswith("application/openmetrics-text")
    assert (
        f'keel_latency_seconds_bucket{{le="0.1",model="m"}} 2.0 # {{trace_id="{"b" * 32}"}} 0.07'
        in body.decode()
    )
