"""Several workers' metric families as the server's: sums exact, gauges as their owner says."""

from __future__ import annotations

import math

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from keel.monitoring.exposition import families_text
from keel.monitoring.merging import continued, family_data, merge_families


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


def _requests(total: float) -> list[Metric]:
    counter = CounterMetricFamily("keel_requests", "Requests.", labels=["model"])
    counter.add_metric(["m"], total)
    histogram = HistogramMetricFamily("keel_latency_seconds", "Latency.", labels=["model"])
    histogram.add_metric(["m"], [("0.1", total / 2), ("+Inf", total)], sum_value=total / 10)
    return [counter, histogram]


def _exposed(families: list[Metric]) -> dict[str, float]:
    return {s.name + s.labels.get("le", ""): s.value for f in families for s in f.samples}


def test_a_sum_that_drops_when_a_worker_dies_continues_from_where_it_was() -> None:
    memory: dict[str, list[float]] = {}
    first = _requests(30)  # two workers: 10 + 20
    continued(first, memory, learn=True)
    assert _exposed(first)["keel_requests_total"] == 30
    dropped = _requests(10)  # the one that counted 20 is gone
    continued(dropped, memory, learn=True)
    assert _exposed(dropped) == _exposed(first)  # no reset for Prometheus to see
    later = _requests(15)  # the survivor counts 5 more, the new worker none yet
    continued(later, memory, learn=True)
    values = _exposed(later)
    assert values["keel_requests_total"] == 35
    assert values["keel_latency_seconds_bucket0.1"] <= values["keel_latency_seconds_bucket+Inf"]


def test_a_worker_left_out_for_a_scrape_is_not_counted_twice_when_it_is_back() -> None:
    memory: dict[str, list[float]] = {}
    continued(_requests(30), memory, learn=True)
    slow = _requests(10)  # the other worker was too slow to answer, its counts still live
    continued(slow, memory, learn=False)
    assert _exposed(slow)["keel_requests_total"] == 30
    back = _requests(32)
    continued(back, memory, learn=True)
    assert _exposed(back)["keel_requests_total"] == 32


def test_a_series_that_is_gone_is_forgotten() -> None:
    memory: dict[str, list[float]] = {}
    continued(_requests(5), memory, learn=True)
    continued([], memory, learn=True)
    assert memory == {}


def _by_endpoint(**counts: float) -> list[Metric]:
    counter = CounterMetricFamily(
        "keel_requests", "Requests.", labels=["model_version", "endpoint"]
    )
    for endpoint, total in counts.items():
        counter.add_metric(["v1", endpoint], total)
    return [counter]


def test_a_series_only_the_dead_worker_counted_stays_at_its_last_value() -> None:
    memory: dict[str, dict[str, object]] = {}
    continued(_by_endpoint(records=50, v2_infer=50), memory, learn=True)
    # Every v2 request had gone to the worker that died: no one reports that series now.
    after = _by_endpoint(records=60)
    continued(after, memory, learn=True)
    assert {s.labels["endpoint"]: s.value for s in after[0].samples} == {
        "records": 60,
        "v2_infer": 50,
    }


def test_a_series_of_a_version_no_longer_served_is_forgotten() -> None:
    memory: dict[str, dict[str, object]] = {}
    continued(_by_endpoint(records=50), memory, learn=True)
    other = CounterMetricFamily("keel_requests", "Requests.", labels=["model_version", "endpoint"])
    other.add_metric(["v2", "records"], 3)
    continued([other], memory, learn=True)
    assert [s.labels["model_version"] for s in other.samples] == ["v2"]
    assert len(memory) == 1
