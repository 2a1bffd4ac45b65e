"""Where finished spans wait to be sent, and what sends them over OTLP.

``SpanQueue`` holds finished spans in a bounded queue that a thread of its own
sends in batches; a span that finds the queue full is dropped and counted, so a
slow or absent collector never slows a request. ``otlp_exporter`` is
OpenTelemetry's OTLP exporter (http/protobuf or grpc) writing its messages with
``keel.otlp_encoding``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from keel.span_records import FinishedSpan

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

Encode = Callable[[Sequence[FinishedSpan]], bytes]
"""Spans to the bytes of an OTLP export request (``keel.otlp_encoding.Encoder``)."""

log = logging.getLogger("keel.tracing")

# Where OpenTelemetry's OTLP span exporters log a failed export (and each retry of one).
EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


def otlp_exporter(protocol: str, encode: Encode) -> SpanExporter:
    """OpenTelemetry's OTLP exporter for ``protocol``, sending the bytes ``encode`` writes; it
    reads its endpoint, headers, timeout, compression and certificates from the
    ``OTEL_EXPORTER_OTLP_*`` variables itself, and retries as the protocol says."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        class KeelGrpcExporter(GrpcExporter):
            def _translate_data(  # type: ignore[override]
                self, data: Sequence[FinishedSpan]
            ) -> ExportTraceServiceRequest:
                # grpcio sends a message: parsing the bytes back (in C) still costs far
                # less than the SDK's building of it.
                message: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(
                    encode(data)
                )
                return message

        return KeelGrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    class KeelHttpExporter(OTLPSpanExporter):
        def export(self, spans: Sequence[FinishedSpan]) -> SpanExportResult:  # type: ignore[override]
            if self._shutdown:
                return SpanExportResult.FAILURE
            sent = self._client.export(encode(spans))
            return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE

    return KeelHttpExporter()


class QuietWhileFailing(logging.Filter):
    """Passes the exporter's words on the first failed export (why it failed), then none
    until an export succeeds again: a collector that is down would otherwise add
    several lines every few seconds, and the drops are counted in /metrics."""

    def __init__(self, queue: SpanQueue) -> None:
        super().__init__()
        self.queue = queue

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.queue.failing


class SpanQueue:
    """Finished spans wait in a bounded queue that a thread sends in batches.

    The SDK's BatchSpanProcessor logs a warning per span it drops and does not count
    a failed export: under load that is a log line per request and spans lost
    unseen. Here a span that finds the queue full is dropped and counted
    (``dropped["queue_full"]``), as is a batch the collector did not take
    (``dropped["export_failed"]``); /metrics shows both.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int,
        max_export_batch_size: int,
        schedule_delay_s: float,
        export_timeout_s: float,
    ) -> None:
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.max_export_batch_size = max_export_batch_size
        self.schedule_delay_s = schedule_delay_s
        self.export_timeout_s = export_timeout_s
        self.exported = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._spans: deque[FinishedSpan] = deque()
        self._wake = threading.Event()
        self._stopping = False
        # Whether the last export failed (the exporter's own log lines are held back then).
        self.failing = False
        # One export at a time: the thread's, or a flush's.
        self._export_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="keel-trace-export", daemon=True)
        self._thread.start()

    def add(self, span: FinishedSpan) -> None:
        """Queue a finished span, or drop and count it when the queue is full; never waits."""
        if self._stopping:
            self.dropped["stopped"] += 1
            return
        if len(self._spans) >= self.max_queue_size:
            self.dropped["queue_full"] += 1
            return
        self._spans.append(span)
        # Set once: Event.set takes a lock each time, which the thread sending holds.
        if len(self._spans) >= self.max_export_batch_size and not self._wake.is_set():
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.schedule_delay_s)
            self._wake.clear()
            self._send_all()

    def _send_all(self, deadline: float | None = None) -> bool:
        """Send every queued span, in batches; False if the deadline passed first."""
        with self._export_lock:
            while self._spans:
                if deadline is not None and time.monotonic() > deadline:
                    return False
                batch = [
                    self._spans.popleft()
                    for _ in range(min(self.max_export_batch_size, len(self._spans)))
                ]
                self._send(batch)
        return True

    def _send(self, batch: list[FinishedSpan]) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.exporter.export(batch)  # type: ignore[arg-type]
        except Exception:
            log.exception("sending %d spans failed", len(batch))
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self.exported += len(batch)
            if self.failing:
                log.info("spans reach the collector again")
            self.failing = False
            return
        self.dropped["export_failed"] += len(batch)
        if not self.failing:
            log.warning(
                "the collector took no spans: %d dropped (counted in "
                "keel_trace_spans_dropped_total; said once until it takes them again)",
                len(batch),
            )
        self.failing = True

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send what is queued now, for at most ``timeout_millis``; whether all of it went."""
        return self._send_all(time.monotonic() + timeout_millis / 1000)

    def shutdown(self, timeout_s: float) -> None:
        """Stop: send what is queued, within ``timeout_s``, unless the collector is failing
        (each try would wait out the exporter's own timeout and retries, holding up the
        process's exit): then what is left is dropped, counted as ``stopped``."""
        deadline = time.monotonic() + timeout_s
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if not self.failing:
            self._send_all(deadline)
        self.dropped["stopped"] += len(self._spans)
        self._spans.clear()
        self.exporter.shutdown()
