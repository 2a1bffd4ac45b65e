"""``GET /metrics``: one Prometheus registry of every owner's families, and its text.

Each owner of data collects its own families at scrape time (the engine its
versions' traffic, lifecycle and drift, ``keel.serving.exposition``; the shadow
its mirrors and prediction log, ``keel.shadow.exposition``), so the request path
never touches the client library and this module imports nothing above it. What
is here is the process's own: build information, memory, and the standard
``process_*`` series.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata as importlib_metadata

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

import keel
from keel import tracing
from keel.monitoring.merging import GaugeRule
from keel.monitoring.metrics import Histogram
from keel.monitoring.process import resident_bytes

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS = "application/openmetrics-text"
# The standard process_* series every Prometheus dashboard expects (start time, CPU
# seconds, open and maximum file descriptors, memory), read from /proc at each scrape;
# not registered with the client library's global registry, which keel does not serve.
PROCESS_COLLECTOR = ProcessCollector(registry=None)


# How the process's own gauges combine over worker processes (``keel.monitoring.merging``):
# each belongs to one process, so each worker's is kept, labelled with the worker.
PROCESS_GAUGES: dict[str, GaugeRule] = {
    "keel_build_info": "max",
    "keel_process_resident_memory_bytes": "worker",
    "process_virtual_memory_bytes": "worker",
    "process_resident_memory_bytes": "worker",
    "process_start_time_seconds": "worker",
    "process_open_fds": "worker",
    "process_max_fds": "worker",
    "process_cpu_seconds": "worker",  # a counter, kept per process like the rest
}

Families = Callable[[], Iterable[Metric]]
"""One owner's metric families, built anew at each scrape."""


class _Collector(Collector):
    def __init__(self, families: Families) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families()


def metrics_registry(*owners: Families) -> CollectorRegistry:
    """A registry of the process's own families and then each owner's, in that order."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PROCESS_COLLECTOR)
    for families in (_process_families, *owners):
        registry.register(_Collector(families))
    return registry


def wants_openmetrics(accept: str | None) -> bool:
    """Whether a scrape that sent ``accept`` gets the OpenMetrics format, which alone carries
    exemplars: only while traces are on (so there are exemplars to give), and only when the
    scraper asks for it (Prometheus does by default)."""
    return tracing.ON and accept is not None and OPENMETRICS in accept


def metrics_text(registry: CollectorRegistry, openmetrics: bool = False) -> tuple[bytes, str]:
    """The exposition of everything ``registry`` collects, and its content type."""
    if openmetrics:
        text: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        return text, OPENMETRICS_CONTENT_TYPE
    return generate_latest(registry), CONTENT_TYPE


def families_text(families: Iterable[Metric], openmetrics: bool = False) -> tuple[bytes, str]:
    """The exposition of ``families``, built elsewhere (several workers'), and its type."""
    listed = list(families)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(lambda: listed))
    return metrics_text(registry, openmetrics)


def add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    """One series of ``family`` from a keel histogram's buckets and sum, and the exemplar of
    each bucket a traced request fell in (written only in the OpenMetrics format)."""
    buckets = histogram.cumulative()
    exemplars = histogram.exemplars
    if exemplars is None:
        family.add_metric(labels, buckets, histogram.sum)
        return
    family.add_metric(
        labels,
        [
            bucket if exemplar is None else (*bucket, _exemplar(exemplar))
            for bucket, exemplar in zip(buckets, exemplars, strict=True)
        ],
        histogram.sum,
    )


def _exemplar(kept: tuple[str, float, float]) -> Exemplar:
    trace_id, value, at = kept
    return Exemplar({"trace_id": trace_id}, value, at)


def _trace_families() -> Iterator[Metric]:
    """The span queue's counts, while traces are sent (``keel.tracing``)."""
    queue = tracing.QUEUE
    if queue is None:
        return
    exported = CounterMetricFamily(
        "keel_trace_spans_exported",
        "Spans the OTLP collector took.",
    )
    exported.add_metric([], queue.exported)
    yield exported
    dropped = CounterMetricFamily(
        "keel_trace_spans_dropped",
        "Spans never sent, by reason: queue_full (the queue, OTEL_BSP_MAX_QUEUE_SIZE, was "
        "full), export_failed (the collector did not take them), stopped (left unsent at the "
        "stop: the collector failing, or the stop's 5 s past).",
        labels=["reason"],
    )
    for reason in ("queue_full", "export_failed", "stopped"):
        dropped.add_metric([reason], queue.dropped[reason])
    yield dropped


def _process_families() -> Iterator[Metric]:
    yield from _trace_families()
    info = GaugeMetricFamily(
        "keel_build_info",
        "keel, Python and model runtime versions of this process (always 1).",
        labels=["keel_version", "python_version", "onnxruntime_version", "numpy_version"],
    )
    info.add_metric(list(_build_versions()), 1)
    yield info
    memory = GaugeMetricFamily(
        "keel_process_resident_memory_bytes", "Resident memory of the keel process."
    )
    memory.add_metric([], float(resident_bytes()))
    yield memory


def _build_versions() -> tuple[str, str, str, str]:
    def version_of(package: str) -> str:
        try:
            return importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            return "absent"

    return (
        keel.__version__,
        platform.python_version(),
        version_of("onnxruntime"),
        version_of("numpy"),
    )
