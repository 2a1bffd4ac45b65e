"""OpenTelemetry traces of inference requests, sent over OTLP; off unless an endpoint is set.

Configured only by OpenTelemetry's standard environment variables, the ones every
collector's documentation tells an operator to set:

- on when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
  set, unless ``OTEL_SDK_DISABLED=true``;
- ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` / ``OTEL_EXPORTER_OTLP_PROTOCOL``:
  ``http/protobuf`` (the default) or ``grpc``;
- ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` (default
  ``parentbased_always_on``: a request continues its caller's decision);
- ``OTEL_SERVICE_NAME`` (default ``keel``) and ``OTEL_RESOURCE_ATTRIBUTES``;
- ``OTEL_BSP_MAX_QUEUE_SIZE``, ``OTEL_BSP_SCHEDULE_DELAY``,
  ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` and ``OTEL_BSP_EXPORT_TIMEOUT`` for the queue;
- the exporter's own (headers, timeout, compression, certificate), which the SDK's
  exporters read.

A value keel cannot use stops the server at start, naming the variable: the SDK
alone would log a warning and fall back, and an operator would find out from a
trace that never came.

Off, a request pays one test of ``TRACER``. On, a request the sampler does not
pick gets no span, and one it picks has its spans made from the timestamps the
request path takes anyway, most of them after the fact: nothing on the request
path enters or leaves a context. Spans wait in a bounded queue (``SpanQueue``)
that a thread of its own sends; a full queue drops spans and counts them, never
slowing a request.
"""

from __future__ import annotations

import collections.abc
import importlib.metadata
import logging
import os
import random
import threading
import time
import typing
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from keel.errors import InvalidConfig

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler, SamplingResult
    from opentelemetry.trace import Link, SpanContext, SpanKind, Tracer
    from opentelemetry.util.types import Attributes

log = logging.getLogger("keel.tracing")

# Where OpenTelemetry's OTLP span exporters log a failed export (and each retry of one).
EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
# The W3C Trace Context headers (HTTP) and metadata keys (gRPC) a request is continued from.
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# The answer's header naming the trace a sampled request is in (W3C Trace Context level 2),
# so a client, and the access log, can find it.
TRACERESPONSE = "traceresponse"

# The tracer requests are traced with; None while tracing is off (the request path's test).
TRACER: Tracer | None = None
# Where spans wait to be sent, with its counts for /metrics; None while tracing is off.
QUEUE: SpanQueue | None = None
_PROVIDER: TracerProvider | None = None
# The filter on the exporters' loggers (_QuietWhileFailing), while tracing is on.
_QUIET: logging.Filter | None = None


@dataclass(frozen=True)
class TraceSettings:
    """What the ``OTEL_*`` environment asks for, checked."""

    endpoint: str
    protocol: str
    sampler: str
    ratio: float | None
    max_queue_size: int
    schedule_delay_s: float
    max_export_batch_size: int
    export_timeout_s: float


def settings_from(environ: Mapping[str, str] = os.environ) -> TraceSettings | None:
    """Tracing as ``environ`` sets it up; None when it is off. InvalidConfig names a bad value."""
    disabled = environ.get("OTEL_SDK_DISABLED", "false").strip().lower()
    if disabled not in ("true", "false"):
        raise InvalidConfig(f"OTEL_SDK_DISABLED is {disabled!r}: it must be true or false")
    endpoint = next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)
    if disabled == "true" or endpoint is None:
        return None
    protocol_variable = next(
        (
            name
            for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
            if environ.get(name)
        ),
        None,
    )
    protocol = "http/protobuf" if protocol_variable is None else environ[protocol_variable].strip()
    if protocol not in PROTOCOLS:
        raise InvalidConfig(
            f"{protocol_variable} is {protocol!r}: keel sends traces over {' or '.join(PROTOCOLS)}"
        )
    sampler = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler not in SAMPLERS:
        raise InvalidConfig(
            f"OTEL_TRACES_SAMPLER is {sampler!r}: it must be one of {', '.join(SAMPLERS)}"
        )
    ratio = None
    if sampler.endswith("traceidratio"):
        raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise InvalidConfig(
                f"OTEL_TRACES_SAMPLER_ARG is {raw!r}: the {sampler} sampler needs a ratio "
                "from 0 to 1"
            )
    return TraceSettings(
        endpoint=endpoint,
        protocol=protocol,
        sampler=sampler,
        ratio=ratio,
        max_queue_size=_positive(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
        schedule_delay_s=_positive(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000,
        max_export_batch_size=_positive(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
        export_timeout_s=_positive(environ, "OTEL_BSP_EXPORT_TIMEOUT", 30000) / 1000,
    )


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidConfig(f"{name} is {raw!r}: it must be a whole number above 0")
    return value


def start(settings: TraceSettings, worker: int | None = None) -> None:
    """Trace requests from now on, as ``settings`` say; called once per serving process."""
    global TRACER, QUEUE, _PROVIDER, _ROOT_SHARE, _PARENT_BASED, _QUIET
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.trace import TracerProvider

    version = importlib.metadata.version("keel")
    attributes: dict[str, Any] = {SERVICE_VERSION: version}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes[SERVICE_NAME] = "keel"
    if worker is not None:
        attributes["keel.worker"] = worker
    queue = SpanQueue(
        _exporter(settings.protocol),
        max_queue_size=settings.max_queue_size,
        max_export_batch_size=settings.max_export_batch_size,
        schedule_delay_s=settings.schedule_delay_s,
        export_timeout_s=settings.export_timeout_s,
    )
    provider = TracerProvider(
        # Duck-typed: the SDK's base classes are imported only once tracing is on.
        sampler=typing.cast(
            "Sampler", _Sampler(_parented_sampler(settings.sampler, settings.ratio))
        ),
        resource=Resource.create(attributes),
    )
    provider.add_span_processor(typing.cast("SpanProcessor", queue))
    _QUIET = _QuietWhileFailing(queue)
    for name in EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET)
    _PROVIDER, QUEUE = provider, queue
    _PARENT_BASED = settings.sampler.startswith("parentbased_")
    if settings.ratio is not None:
        _ROOT_SHARE = settings.ratio
    else:
        _ROOT_SHARE = 0.0 if settings.sampler.endswith("always_off") else 1.0
    _resync(time.perf_counter())
    TRACER = provider.get_tracer("keel", version)
    log.info(
        "traces go to %s over %s, sampler %s%s",
        settings.endpoint,
        settings.protocol,
        settings.sampler,
        "" if settings.ratio is None else f" ({settings.ratio:g})",
    )


def stop(timeout_s: float = 5.0) -> None:
    """Send the spans still queued (for at most ``timeout_s``) and stop tracing."""
    global TRACER, QUEUE, _PROVIDER, _QUIET
    provider = _PROVIDER
    TRACER = QUEUE = _PROVIDER = None
    if provider is not None:
        provider.force_flush(int(timeout_s * 1000))
        provider.shutdown()
    if _QUIET is not None:
        for name in EXPORTER_LOGGERS:
            logging.getLogger(name).removeFilter(_QUIET)
        _QUIET = None


def _exporter(protocol: str) -> SpanExporter:
    """The SDK's OTLP exporter for ``protocol``, writing its messages with
    ``keel.otlp_encoding``; it reads its endpoint, headers, timeout, compression and
    certificates from the ``OTEL_EXPORTER_OTLP_*`` variables itself."""
    from opentelemetry.sdk.trace.export import SpanExportResult

    from keel.otlp_encoding import export_request

    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        class KeelGrpcExporter(GrpcExporter):
            def _translate_data(self, data: Sequence[ReadableSpan]) -> ExportTraceServiceRequest:
                # grpcio sends a message: parsing the bytes back (in C) still costs far
                # less than the SDK's building of it.
                message: ExportTraceServiceRequest = ExportTraceServiceRequest.FromString(
                    export_request(data)
                )
                return message

        return KeelGrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    class KeelHttpExporter(OTLPSpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            if self._shutdown:
                return SpanExportResult.FAILURE
            sent = self._client.export(export_request(spans))
            return SpanExportResult.SUCCESS if sent.success else SpanExportResult.FAILURE

    return KeelHttpExporter()


def _parented_sampler(name: str, ratio: float | None) -> Sampler:
    """The SDK's sampler for ``OTEL_TRACES_SAMPLER``, which keel asks about spans with a
    parent; of a request that continues no trace, keel decides itself (``request_span``)."""
    from opentelemetry.sdk.trace import sampling

    root: Sampler = (
        sampling.ALWAYS_OFF
        if name.endswith("always_off")
        else sampling.ALWAYS_ON
        if name.endswith("always_on")
        else sampling.TraceIdRatioBased(1.0 if ratio is None else ratio)
    )
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


# -- the request path -----------------------------------------------------------------


# Wall-clock nanoseconds minus perf_counter's, for stamping spans with timestamps the request
# path took on perf_counter. One offset for all the spans of a request keeps a step inside
# its request to the nanosecond; it is read again now and then (RESYNC_S), so that the
# wall clock's corrections (NTP) are followed.
RESYNC_S = 10.0
_offset_ns = 0
_offset_read_at = -RESYNC_S


def _resync(now_s: float) -> None:
    global _offset_ns, _offset_read_at
    _offset_ns = time.time_ns() - int(now_s * 1e9)
    _offset_read_at = now_s


def epoch_ns(perf_s: float) -> int:
    """A ``time.perf_counter()`` reading as the wall-clock nanoseconds spans are stamped in."""
    return int(perf_s * 1e9) + _offset_ns


# The sampler's verdict on a request that continues no trace, drawn by keel before the SDK
# is asked: the SDK makes a span object, ids included, even for a request it then drops,
# which cost a request passed by at 1% sampling a third of the server's throughput
# (bench/tracing_overhead.py). The share of such requests traced; 1.0 draws nothing.
_ROOT_SHARE = 1.0
# Whether a caller's sampled flag decides (the parentbased_ samplers).
_PARENT_BASED = True
_random = random.Random()  # noqa: S311 - sampling and span ids, not security
_draw, _draw_bits = _random.random, _random.getrandbits
# A traceparent's length: version, trace id, parent id and flags, joined by "-".
_TRACEPARENT_LENGTH = 55


def request_span(
    name: str,
    carrier: Mapping[str, str] | None,
    started_s: float,
    attributes: Attributes,
) -> Span | None:
    """The span of one request, continuing the trace of ``carrier``'s ``traceparent`` (HTTP
    headers or gRPC metadata) when it has one; None when tracing is off or the sampler passes
    the request by."""
    tracer = TRACER
    if tracer is None:
        return None
    traceparent = None if carrier is None else carrier.get(TRACEPARENT)
    if traceparent is None or len(traceparent) != _TRACEPARENT_LENGTH:
        # A trace of its own (a malformed traceparent is ignored, as the propagator would).
        if _ROOT_SHARE < 1.0 and (_ROOT_SHARE == 0.0 or _draw() >= _ROOT_SHARE):
            return None
        context = None
    else:
        if _PARENT_BASED and not int(traceparent[-2:], 16) & 1:
            return None  # the caller did not sample it
        context = _extracted(traceparent, carrier.get(TRACESTATE) if carrier else None)
    from opentelemetry.trace import SpanKind

    if started_s - _offset_read_at > RESYNC_S:
        _resync(time.perf_counter())
    span = tracer.start_span(
        name,
        context,
        kind=SpanKind.SERVER,
        attributes=attributes,
        start_time=epoch_ns(started_s),
    )
    if not span.is_recording():
        return None
    return span  # type: ignore[return-value]  # the SDK's Span, as its tracer makes them


def _extracted(traceparent: str, tracestate: str | None) -> Context:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {TRACEPARENT: traceparent}
    if tracestate is not None:
        carrier[TRACESTATE] = tracestate
    return TraceContextTextMapPropagator().extract(carrier)


def child_span(
    parent: Span | ReadableSpan,
    name: str,
    started_s: float,
    ended_s: float,
    attributes: Attributes = None,
    links: Sequence[SpanContext] = (),
) -> ReadableSpan:
    """A finished span of ``parent``'s from ``started_s`` to ``ended_s`` (perf_counter),
    linked to the spans of ``links``, queued to be sent.

    Made whole, as the SDK's own spans become once they end, rather than started and
    ended through the tracer: a step's span is complete when it is made, and the
    tracer's way (a sampler's verdict, a lock, attribute checks) cost five times as
    much, which every sampled request paid for each of its steps.
    """
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import Link, SpanContext

    assert QUEUE is not None
    context = parent.get_span_context()
    assert context is not None
    span = ReadableSpan(
        name,
        SpanContext(
            context.trace_id,
            _draw_bits(64) or 1,
            is_remote=False,
            trace_flags=context.trace_flags,
            trace_state=context.trace_state,
        ),
        context,
        parent.resource,
        attributes,
        links=[Link(linked) for linked in links],
        start_time=epoch_ns(started_s),
        end_time=epoch_ns(ended_s),
        instrumentation_scope=parent.instrumentation_scope,
    )
    QUEUE.on_end(span)
    return span


def linked_span(
    name: str,
    links: Sequence[SpanContext],
    started_s: float,
    attributes: Attributes = None,
    kind: SpanKind | None = None,
) -> Span | None:
    """The first span of a trace of its own, linked to the spans of ``links`` (the requests
    of a batch, the request a shadow call mirrors); recorded when any of them is."""
    tracer = TRACER
    if tracer is None:
        return None
    from opentelemetry.trace import INVALID_SPAN, Link, SpanKind, set_span_in_context

    span = tracer.start_span(
        name,
        # No parent, even where one is current: the span starts a trace of its own.
        set_span_in_context(INVALID_SPAN),
        kind=SpanKind.INTERNAL if kind is None else kind,
        attributes=attributes,
        links=[Link(context) for context in links],
        start_time=epoch_ns(started_s),
    )
    return span if span.is_recording() else None  # type: ignore[return-value]


def trace_response(span: Span) -> tuple[bytes, bytes]:
    """The ``traceresponse`` header that names ``span``'s trace and itself."""
    context = span.get_span_context()
    value = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    return TRACERESPONSE.encode(), value.encode()


def trace_id(span: Span) -> str:
    return f"{span.get_span_context().trace_id:032x}"


def end_span(span: Span, ended_s: float, attributes: Attributes, failed: str | None) -> None:
    """End ``span`` at ``ended_s`` with its outcome; ``failed`` is the error type, if any."""
    from opentelemetry.trace import Status, StatusCode

    if attributes:
        span.set_attributes(attributes)
    if failed is not None:
        span.set_attribute("error.type", failed)
        span.set_status(Status(StatusCode.ERROR))
    span.end(epoch_ns(ended_s))


class _Sampler:
    """The SDK's sampler: ``parented`` (OTEL_TRACES_SAMPLER) judges a span with a parent; a
    span with none is one keel has decided to record already.

    A request span with no parent reaches the SDK only once ``request_span`` drew it.
    A batch serves requests from many traces, and a shadow call mirrors one request
    after its answer: each starts a trace of its own, linked to the requests, and is
    recorded when a span it links to is. Left to a ratio sampler, a sampled request
    would mostly lack its batch; following the links, every sampled request's batch
    and shadow call are there.
    """

    def __init__(self, parented: Sampler) -> None:
        self.parented = parented

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult
        from opentelemetry.trace import get_current_span

        if get_current_span(parent_context).get_span_context().is_valid:
            return self.parented.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        if not links or any(link.context.trace_flags.sampled for link in links):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return f"keel{{{self.parented.get_description()}}}"


class _QuietWhileFailing(logging.Filter):
    """Passes the exporter's words on the first failed export (why it failed), then none
    until an export succeeds again: a collector that is down would otherwise add
    several lines every few seconds, and the drops are counted in /metrics."""

    def __init__(self, queue: SpanQueue) -> None:
        super().__init__()
        self.queue = queue

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.queue.failing


class SpanQueue:
    """A span processor: finished spans wait in a bounded queue that a thread sends in batches.

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
        self._spans: deque[ReadableSpan] = deque()
        self._wake = threading.Event()
        self._stopping = False
        # Whether the last export failed (the exporter's own log lines are held back then).
        self.failing = False
        # One export at a time: the thread's, or a flush's.
        self._export_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="keel-trace-export", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        return len(self._spans)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing: a span is queued when it ends."""

    def _on_ending(self, span: Span) -> None:
        """Nothing (the SDK calls it on every processor before a span ends)."""

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopping:
            self.dropped["stopped"] += 1
            return
        if len(self._spans) >= self.max_queue_size:
            self.dropped["queue_full"] += 1
            return
        self._spans.append(span)
        if len(self._spans) >= self.max_export_batch_size:
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

    def _send(self, batch: list[ReadableSpan]) -> None:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.exporter.export(batch)
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
        return self._send_all(time.monotonic() + timeout_millis / 1000)

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(self.export_timeout_s)
        self._send_all(time.monotonic() + self.export_timeout_s)
        self.exporter.shutdown()
