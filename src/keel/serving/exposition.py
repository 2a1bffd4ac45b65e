"""The engine's ``/metrics`` families: each served version's lifecycle, traffic and drift.

Built at scrape time from what each version keeps (``ServingMetrics``, its
batcher, its drift window). Every series carries ``model`` and
``model_version``; labels come only from served versions and their declared
features and outputs, so a request for an unknown model, or a record with
made-up fields, never creates a series.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from keel.monitoring.exposition import add_histogram
from keel.monitoring.merging import GaugeRule
from keel.monitoring.snapshot import DriftSnapshot
from keel.reference import NumericStats
from keel.serving.model_manager import ModelManager
from keel.serving.served_version import ServedVersion, VersionState

MODEL = ("model", "model_version")


# How each gauge here combines over worker processes (``keel.monitoring.merging``); the
# drift verdicts are not among them: they are judged again on every worker's window.
SERVING_GAUGES: dict[str, GaugeRule] = {
    "keel_model_loaded": "min",
    "keel_model_ready": "min",
    "keel_model_load_duration_seconds": "max",
    "keel_model_warmup_duration_seconds": "max",
    "keel_golden_check_passed": "min",
    "keel_environment_mismatch": "max",
    "keel_queue_depth": "sum",
    "keel_in_flight_requests": "sum",
}


def serving_families(manager: ModelManager, *, judged: bool = True) -> Iterator[Metric]:
    """The families of every version ``manager`` serves, as they stand now.

    ``judged=False`` leaves out the drift verdicts (``drift_families``), which only
    the whole window can give when several workers each hold a part of it.
    """
    versions = manager.versions()
    yield from _lifecycle(versions)
    yield from _traffic(versions)
    monitored = monitored_versions(versions)
    if judged:
        yield from drift_families([(v, v.monitor.snapshot()) for v in monitored if v.monitor])
    yield from _distributions(monitored)


def monitored_versions(versions: Sequence[ServedVersion]) -> list[ServedVersion]:
    """The ready versions with a drift window."""
    return [v for v in versions if v.monitor is not None and v.ready]


def _labels(version: ServedVersion) -> list[str]:
    return [version.name, version.label]


def _gauge(
    name: str, documentation: str, rows: Iterable[tuple[ServedVersion, float | None]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(MODEL))
    for version, value in rows:
        if value is not None:
            family.add_metric(_labels(version), value)
    return family


def _lifecycle(versions: Sequence[ServedVersion]) -> Iterator[Metric]:
    yield _gauge(
        "keel_model_loaded",
        "1 while the version's model is loaded in memory.",
        (
            (v, float(v.loaded is not None and v.state is not VersionState.RETIRED))
            for v in versions
        ),
    )
    yield _gauge(
        "keel_model_ready",
        "1 while the version is verified, warm and taking requests.",
        ((v, float(v.ready)) for v in versions),
    )
    yield _gauge(
        "keel_model_load_duration_seconds",
        "Seconds spent loading the version and verifying its hashes.",
        ((v, v.timings.load_s if v.timings else None) for v in versions),
    )
    yield _gauge(
        "keel_model_warmup_duration_seconds",
        "Seconds spent on warm-up predictions before the version became ready.",
        ((v, v.timings.warmup_s if v.timings else None) for v in versions),
    )
    yield _gauge(
        "keel_golden_check_passed",
        "1 if the golden examples reproduced within tolerance, 0 if not (absent until run).",
        ((v, None if v.golden_passed is None else float(v.golden_passed)) for v in versions),
    )
    yield _gauge(
        "keel_environment_mismatch",
        "Critical packages (and Python) whose version differs from the training environment.",
        (
            (v, None if v.environment_mismatches is None else float(v.environment_mismatches))
            for v in versions
        ),
    )
    demotions = CounterMetricFamily(
        "keel_inline_demotions",
        "Times the version's model moved off the event loop to its own threads, for good, "
        "after one run on the loop took over max(4x batching.inline_below_us, 1 ms) of CPU "
        "time (0 or 1).",
        labels=list(MODEL),
    )
    for version in versions:
        if version.batcher is not None:
            demotions.add_metric(_labels(version), version.batcher.inline_demotions)
    yield demotions


def _traffic(versions: Sequence[ServedVersion]) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        "keel_requests",
        "Requests answered, by endpoint and HTTP status (the server's own warm-up excluded).",
        labels=[*MODEL, "endpoint", "status"],
    )
    warmup = CounterMetricFamily(
        "keel_warmup_requests",
        "Requests the server sent itself over HTTP before reporting ready, by endpoint and "
        "HTTP status; not traffic, so in no other request metric.",
        labels=[*MODEL, "endpoint", "status"],
    )
    latency = HistogramMetricFamily(
        "keel_request_duration_seconds",
        "Seconds from the request's arrival to its answer, by endpoint.",
        labels=[*MODEL, "endpoint"],
    )
    rejected = CounterMetricFamily(
        "keel_requests_rejected",
        "Requests refused, by reason: overloaded, deadline, too_large, invalid, not_ready, "
        "nonfinite_output.",
        labels=[*MODEL, "reason"],
    )
    failures = CounterMetricFamily(
        "keel_validation_failures",
        "Validation failures by field (a declared feature or input) and rule.",
        labels=[*MODEL, "field", "rule"],
    )
    queue = HistogramMetricFamily(
        "keel_queue_duration_seconds",
        "Seconds each request waited in the batcher's queue.",
        labels=list(MODEL),
    )
    inference = HistogramMetricFamily(
        "keel_inference_duration_seconds", "Seconds each model call took.", labels=list(MODEL)
    )
    batch_size = HistogramMetricFamily(
        "keel_batch_size", "Rows in each model call.", labels=list(MODEL)
    )
    ages = HistogramMetricFamily(
        "keel_feature_age_seconds",
        "Seconds since a feature with a max_age_s was computed, as requests said.",
        labels=[*MODEL, "feature"],
    )
    stale = CounterMetricFamily(
        "keel_feature_stale",
        "Values older than their feature's max_age_s (refused or only counted, by policy).",
        labels=[*MODEL, "feature"],
    )
    for version in versions:
        labels = _labels(version)
        metrics = version.metrics
        for (endpoint, status), count in sorted(metrics.requests.items()):
            requests.add_metric([*labels, endpoint, str(status)], count)
        for (endpoint, status), count in sorted(metrics.warmup_requests.items()):
            warmup.add_metric([*labels, endpoint, str(status)], count)
        for endpoint, histogram in sorted(metrics.latency.items()):
            add_histogram(latency, [*labels, endpoint], histogram)
        for reason, count in sorted(metrics.rejected.items()):
            rejected.add_metric([*labels, reason], count)
        for (field, rule), count in sorted(metrics.validation_failures.items()):
            failures.add_metric([*labels, field, rule], count)
        add_histogram(queue, labels, metrics.queue_wait)
        add_histogram(inference, labels, metrics.inference)
        add_histogram(batch_size, labels, metrics.batch_size)
        for feature, histogram in sorted(metrics.feature_age.items()):
            add_histogram(ages, [*labels, feature], histogram)
        for feature, count in sorted(metrics.stale.items()):
            stale.add_metric([*labels, feature], count)
    yield from (requests, warmup, latency, rejected, failures, queue, inference, batch_size)
    yield from (ages, stale)
    yield _gauge(
        "keel_queue_depth",
        "Rows waiting in the batcher's queue.",
        ((v, float(v.batcher.queued_rows) if v.batcher else 0.0) for v in versions),
    )
    yield _gauge(
        "keel_in_flight_requests",
        "Requests being read, queued or run right now.",
        ((v, float(v.metrics.in_flight)) for v in versions),
    )


def drift_families(snapshots: Sequence[tuple[ServedVersion, DriftSnapshot]]) -> Iterator[Metric]:
    """The drift verdicts of each version's window, one family per figure."""
    feature = [*MODEL, "feature"]
    output = [*MODEL, "output"]
    families = {
        "rows": GaugeMetricFamily(
            "keel_drift_window_rows", "Rows in the version's drift window.", labels=list(MODEL)
        ),
        "psi": GaugeMetricFamily(
            "keel_feature_drift_psi",
            "PSI of the feature's window against its reference bins.",
            labels=feature,
        ),
        "statistic": GaugeMetricFamily(
            "keel_feature_drift_statistic",
            "The feature's second drift test: ks (numeric) or chi2 (categorical) statistic.",
            labels=[*feature, "test"],
        ),
        "status": GaugeMetricFamily(
            "keel_feature_drift_status",
            "0 ok, 1 warn, 2 alert, by the model's thresholds (0 until the window is judged).",
            labels=feature,
        ),
        "null_rate": GaugeMetricFamily(
            "keel_feature_null_rate", "Share of null values in the drift window.", labels=feature
        ),
        "null_spike": GaugeMetricFamily(
            "keel_feature_null_rate_spike",
            "1 when the feature's null rate jumped above its reference's.",
            labels=feature,
        ),
        "prediction_psi": GaugeMetricFamily(
            "keel_prediction_drift_psi",
            "PSI of the prediction column's window against its reference.",
            labels=output,
        ),
        "prediction_status": GaugeMetricFamily(
            "keel_prediction_drift_status", "0 ok, 1 warn, 2 alert.", labels=output
        ),
        "collapse": GaugeMetricFamily(
            "keel_prediction_collapse",
            "1 when the predictions lost their spread (all one value, or nearly).",
            labels=output,
        ),
        "entropy": GaugeMetricFamily(
            "keel_prediction_entropy",
            "Mean entropy (nats) of the rows of a probability output in the window, one "
            "series per output.",
            labels=output,
        ),
    }
    for version, snapshot in snapshots:
        labels = _labels(version)
        families["rows"].add_metric(labels, snapshot.rows)
        for column in snapshot.features:
            at = [*labels, column.name]
            families["status"].add_metric(at, column.status)
            families["null_spike"].add_metric(at, float(column.null_spike))
            _add_if(families["psi"], at, column.psi)
            _add_if(families["null_rate"], at, column.null_rate)
            if column.test is not None:
                _add_if(families["statistic"], [*at, column.test], column.statistic)
        for prediction in snapshot.predictions:
            at = [*labels, prediction.name]
            families["prediction_status"].add_metric(at, prediction.status)
            families["collapse"].add_metric(at, float(prediction.collapsed))
            _add_if(families["prediction_psi"], at, prediction.psi)
        for name, entropy in snapshot.entropy.items():
            families["entropy"].add_metric([*labels, name], entropy)
    yield from families.values()


def _add_if(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, value)


def _distributions(versions: Sequence[ServedVersion]) -> Iterator[Metric]:
    """Feature and prediction histograms at the reference's quantile bins, and null counts."""
    features = HistogramMetricFamily(
        "keel_feature_value",
        "Values of a numeric feature, bucketed at its reference deciles.",
        labels=[*MODEL, "feature"],
    )
    predictions = HistogramMetricFamily(
        "keel_prediction_value",
        "Values of a numeric prediction column, bucketed at its reference deciles.",
        labels=[*MODEL, "output"],
    )
    nulls = CounterMetricFamily(
        "keel_feature_null",
        "Rows whose feature value was null (or NaN), since the version was loaded.",
        labels=[*MODEL, "feature"],
    )
    for version in versions:
        monitor = version.monitor
        reference = version.metadata.reference
        if monitor is None or reference is None:
            continue
        counts = monitor.window.lifetime_counts()
        for column in monitor.window.layout.columns:
            labels = [*_labels(version), column.name]
            if column.role == "feature":
                nulls.add_metric(labels, int(counts[column.null_slot]))
            stats = (reference.features if column.role == "feature" else reference.predictions).get(
                column.name
            )
            if not isinstance(stats, NumericStats) or len(stats.bin_edges) + 1 != column.bins:
                continue
            bins = counts[column.offset : column.offset + column.bins].tolist()
            bounds = [repr(edge) for edge in stats.bin_edges] + ["+Inf"]
            buckets = list(zip(bounds, itertools.accumulate(bins), strict=True))
            family = features if column.role == "feature" else predictions
            family.add_metric(labels, buckets, None)
    yield from (features, predictions, nulls)
