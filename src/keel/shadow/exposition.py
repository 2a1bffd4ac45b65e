"""The shadow mirrors and the prediction log as Prometheus metric families, built at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from keel.monitoring.exposition import add_histogram
from keel.monitoring.merging import GaugeRule, WeightedMean
from keel.shadow.shadowing import Shadowing

CANDIDATE = ("model", "candidate_version")
# How each gauge here combines over worker processes (``keel.monitoring.merging``). Each
# worker mirrors its own requests to its own candidate and writes its own log buffer.
SHADOW_GAUGES: dict[str, GaugeRule] = {
    "keel_shadow_candidate_ready": "min",
    "keel_shadow_queue_depth": "sum",
    # The live figures are over each worker's own last rows: the server's weighs each
    # worker's by the rows (or values) behind it, as the shadow status does.
    "keel_shadow_agreement": WeightedMean("keel_shadow_agreement_rows"),
    "keel_shadow_agreement_rows": "sum",
    "keel_shadow_mean_abs_difference": WeightedMean("keel_shadow_difference_values"),
    "keel_shadow_difference_values": "sum",
    "keel_prediction_log_pending": "sum",
    "keel_prediction_log_pending_limit": "sum",
    "keel_prediction_log_up": "min",
}


def shadow_families(shadowing: Shadowing) -> Iterator[Metric]:
    """Mirrored requests by outcome, candidate latency, live agreement, and the log's health."""
    mirrors = list(shadowing.mirrors.values())
    if not mirrors:
        return
    requests = CounterMetricFamily(
        "keel_shadow_requests",
        "Primary requests offered to the shadow candidate, by what became of them "
        "(ok, error, timeout, dropped, unmirrored).",
        labels=["model", "model_version", "candidate_version", "status"],
    )
    ready = GaugeMetricFamily(
        "keel_shadow_candidate_ready",
        "1 while the shadow candidate takes mirrored requests (0 while loading, or paused "
        "after timeouts in a row).",
        labels=list(CANDIDATE),
    )
    queued = GaugeMetricFamily(
        "keel_shadow_queue_depth",
        "Mirrored requests waiting for the candidate.",
        labels=list(CANDIDATE),
    )
    latency = HistogramMetricFamily(
        "keel_shadow_candidate_duration_seconds",
        "Seconds the candidate took to answer a mirrored request (answered ones).",
        labels=list(CANDIDATE),
    )
    compared = CounterMetricFamily(
        "keel_shadow_rows_compared",
        "Rows the candidate answered and keel compared with the primary's answer.",
        labels=list(CANDIDATE),
    )
    agreeing = CounterMetricFamily(
        "keel_shadow_rows_agreeing",
        "Compared rows where the candidate agreed with the primary (same label, or scores "
        "within the promotion tolerance).",
        labels=list(CANDIDATE),
    )
    agreement = GaugeMetricFamily(
        "keel_shadow_agreement",
        "Share of the last 1000 compared rows where the candidate agreed with the primary.",
        labels=list(CANDIDATE),
    )
    agreement_rows = GaugeMetricFamily(
        "keel_shadow_agreement_rows",
        "Compared rows behind keel_shadow_agreement (the last 1000 of each worker).",
        labels=list(CANDIDATE),
    )
    difference = GaugeMetricFamily(
        "keel_shadow_mean_abs_difference",
        "Mean absolute difference of a float output over the last 1000 compared rows.",
        labels=[*CANDIDATE, "output"],
    )
    difference_values = GaugeMetricFamily(
        "keel_shadow_difference_values",
        "Finite differences behind keel_shadow_mean_abs_difference (an output's elements "
        "over the last 1000 compared rows of each worker).",
        labels=[*CANDIDATE, "output"],
    )
    for mirror in mirrors:
        version = mirror.candidate.version or ""
        labels = [mirror.model, version]
        for (primary, candidate, status), count in mirror.counts.items():
            requests.add_metric([mirror.model, primary, candidate, status.value], count)
        ready.add_metric(labels, float(mirror.ready))
        queued.add_metric(labels, mirror.queued)
        add_histogram(latency, labels, mirror.candidate_latency)
        compared.add_metric(labels, mirror.live.rows_compared)
        agreeing.add_metric(labels, mirror.live.rows_agreeing)
        live = mirror.live.agreement()
        if live is not None:
            agreement.add_metric(labels, live)
            agreement_rows.add_metric(labels, mirror.live.recent_rows)
        for output, (total, count) in mirror.live.difference_sums().items():
            if count:
                difference.add_metric([*labels, output], total / count)
                difference_values.add_metric([*labels, output], count)
    yield from (requests, ready, queued, latency, compared, agreeing, agreement, agreement_rows)
    yield from (difference, difference_values)
    if shadowing.log is not None:
        yield from _log_families(shadowing)


def _log_families(shadowing: Shadowing) -> Iterator[Metric]:
    prediction_log = shadowing.log
    assert prediction_log is not None
    written = CounterMetricFamily(
        "keel_prediction_log_written", "Records written to the prediction log."
    )
    written.add_metric([], prediction_log.written)
    dropped = CounterMetricFamily(
        "keel_prediction_log_dropped",
        "Records never written: buffer full (queue_full), the store failed (store_error), "
        "or the log had closed (closed).",
        labels=["reason"],
    )
    for reason in ("queue_full", "store_error", "closed"):
        dropped.add_metric([reason], prediction_log.dropped.get(reason, 0))
    pending = GaugeMetricFamily(
        "keel_prediction_log_pending", "Records buffered, waiting to be written."
    )
    pending.add_metric([], prediction_log.pending)
    limit = GaugeMetricFamily(
        "keel_prediction_log_pending_limit",
        "Most records buffered before new ones are dropped: what the store was measured "
        "to take in shadow.log.max_pending_s (shadow.log.max_pending until measured).",
    )
    limit.add_metric([], prediction_log.pending_limit)
    up = GaugeMetricFamily(
        "keel_prediction_log_up", "1 while the prediction log's last write succeeded."
    )
    up.add_metric([], float(prediction_log.healthy))
    yield from (written, dropped, pending, limit, up)
