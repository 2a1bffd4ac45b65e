"""Several workers' metric families as the server's: sums exact, gauges as their owner says."""

from __future__ import annotations

import math

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from keel.monitoring.exposition import families_text
from keel.monitoring.merging import family_data, merge_families


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


def test_the_merged_families_are_valid_exposition_text() -> None:
    merged = merge_families([("0", _worker(1, 0, 1, 1, [1, 0]))], RULES)
    text = families_text(merged).decode()
    assert "# TYPE keel_requests_total counter" in text
    assert 'keel_requests_total{model="m"} 1.0' in text
    assert 'keel_latency_seconds_bucket{le="+Inf",model="m"} 1.0' in text


def test_a_value_json_cannot_hold_travels_as_text() -> None:
    gauge = GaugeMetricFamily("keel_model_ready", "Ready.")
    gauge.add_metric([], float("nan"))
    data = orjson.loads(orjson.dumps(family_data([gauge])))
    (family,) = merge_families([("0", data)], {"keel_model_ready": "max"})
    assert math.isnan(family.samples[0].value)
