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

Spans are sent with OpenTelemetry's OTLP exporters, carry a resource made by its
SDK (``Resource.create``) and continue W3C Trace Context through its propagator,
but they are not made through its tracer. The tracer makes a span object, ids and
attribute checks included, for every request it is asked about and each step of
one, and its sampler, locks and checks cost a sampled request more than keel's
whole answer (bench/tracing_overhead.py). Here the sampler's verdict is drawn
first, from the same rules (``OTEL_TRACES_SAMPLER``), so a request passed by costs
a random draw; a sampled request's span is an ``OpenSpan`` until its answer, and
every span is made whole, a record (``keel.span_records``), from the timestamps
the request path takes anyway, then written to the wire by ``keel.otlp_encoding``.

Off, a request pays one test of ``ON``. Spans wait in a bounded queue
(``keel.span_queue``) that a thread of its own sends; a full queue drops spans and
counts them, never slowing a request.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from keel.errors import InvalidConfig
from keel.otlp_encoding import Encoder
from keel.span_queue import EXPORTER_LOGGERS, QuietWhileFailing, SpanQueue, otlp_exporter
from keel.span_records import INTERNAL, SERVER, FinishedSpan, SpanContext

log = logging.getLogger("keel.tracing")
T = TypeVar("T")

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
_TRACERESPONSE = TRACERESPONSE.encode()

# Whether requests are traced: the request path's one test while tracing is off.
ON = False
# Where spans wait to be sent, with its counts for /metrics; None while tracing is off.
QUEUE: SpanQueue | None = None
# The filter on the exporters' loggers (QuietWhileFailing), while tracing is on.
_QUIET: logging.Filter | None = None

# The sampler, as keel draws it. Of a request that continues no trace: the share traced
# (1.0 draws nothing). Of one that does: whether the caller's sampled flag decides
# (parentbased_*), else always (always_on), never (always_off) or by the trace id's
# low 64 bits (traceidratio, as OpenTelemetry's TraceIdRatioBased does).
_ROOT_SHARE = 1.0
_PARENT_BASED = True
_PARENTED_BOUND: int | None = None  # traceidratio with a parent: sampled below this
_random = random.Random()  # noqa: S311 - sampling and span ids, not security
_draw, _bits = _random.random, _random.getrandbits
# A traceparent's length: version, trace id, parent id and flags, joined by "-".
_TRACEPARENT_LENGTH = 55
_TRACE_ID_LIMIT = (1 << 64) - 1
_SAMPLED = 0x01
# A traceparent's flags as its last two characters write them (lower-case hex, per W3C).
_FLAGS = {f"{value:02x}": value for value in range(256)}


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
    endpoint_variable = next(name for name in ENDPOINT_VARIABLES if environ.get(name))
    scheme = endpoint.partition("://")[0] if "://" in endpoint else ""
    if scheme not in ("http", "https") and not (protocol == "grpc" and not scheme):
        # Over http/protobuf the exporter posts to the URL; a bare host:port fails each export.
        raise InvalidConfig(
            f"{endpoint_variable} is {endpoint!r}: it must be an http:// or https:// URL, "
            "such as http://otel-collector:4318"
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
    global ON, QUEUE, _QUIET, _ROOT_SHARE, _PARENT_BASED, _PARENTED_BOUND
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    version = importlib.metadata.version("keel")
    attributes: dict[str, Any] = {SERVICE_VERSION: version}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    if not named:
        attributes[SERVICE_NAME] = "keel"
    if worker is not None:
        attributes["keel.worker"] = worker
    # Reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, as every SDK does.
    resource = Resource.create(attributes)
    QUEUE = SpanQueue(
        otlp_exporter(settings.protocol, Encoder(resource, InstrumentationScope("keel", version))),
        max_queue_size=settings.max_queue_size,
        max_export_batch_size=settings.max_export_batch_size,
        schedule_delay_s=settings.schedule_delay_s,
        export_timeout_s=settings.export_timeout_s,
    )
    _QUIET = QuietWhileFailing(QUEUE)
    for name in EXPORTER_LOGGERS:
        logging.getLogger(name).addFilter(_QUIET)
    sampler = settings.sampler
    _PARENT_BASED = sampler.startswith("parentbased_")
    if settings.ratio is not None:
        _ROOT_SHARE = settings.ratio
        _PARENTED_BOUND = round(settings.ratio * (_TRACE_ID_LIMIT + 1))
    else:
        _ROOT_SHARE = 0.0 if sampler.endswith("always_off") else 1.0
        _PARENTED_BOUND = None
    _resync(time.perf_counter())
    ON = True
    log.info(
        "traces go to %s over %s, sampler %s%s",
        settings.endpoint,
        settings.protocol,
        sampler,
        "" if settings.ratio is None else f" ({settings.ratio:g})",
    )


def stop(timeout_s: float = 5.0) -> None:
    """Send the spans still queued (for at most ``timeout_s``) and stop tracing."""
    global ON, QUEUE, _QUIET
    queue = QUEUE
    ON, QUEUE = False, None
    if queue is not None:
        queue.shutdown(timeout_s)
    if _QUIET is not None:
        for name in EXPORTER_LOGGERS:
            logging.getLogger(name).removeFilter(_QUIET)
        _QUIET = None


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


class OpenSpan:
    """A span in progress (a request's, until its answer; a batch's, until its outputs):
    what it will be sent as once ``end_span`` ends it."""

    __slots__ = ("attributes", "context", "kind", "links", "name", "parent", "start_ns")

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: int,
        start_ns: int,
        attributes: dict[str, Any],
        links: tuple[SpanContext, ...] = (),
    ) -> None:
        self.name = name
        self.context = context
        self.parent = parent
        self.kind = kind
        self.start_ns = start_ns
        self.attributes = attributes
        self.links = links

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


def request_span(
    carrier: Mapping[str, str] | None,
    started_s: float,
    describe: Callable[[T], tuple[str, dict[str, Any]]],
    subject: T,
) -> OpenSpan | None:
    """The span of one request, continuing the trace of ``carrier``'s ``traceparent`` (HTTP
    headers or gRPC metadata) when it has one; None when tracing is off or the sampler passes
    the request by. ``describe(subject)`` names the span and gives its attributes, asked only
    of a request that is sampled: the rest pay nothing for them."""
    if not ON:
        return None
    traceparent = None if carrier is None else carrier.get(TRACEPARENT)
    parent = None
    if traceparent is not None and len(traceparent) == _TRACEPARENT_LENGTH:
        # Flags that are not hex make it malformed, ignored as the propagator ignores it:
        # a caller's header must never fail its request.
        flags = _FLAGS.get(traceparent[-2:])
        if flags is not None:
            if _PARENT_BASED and not flags & _SAMPLED:
                return None  # the caller did not sample it
            parent = _remote_parent(traceparent, carrier.get(TRACESTATE) if carrier else None)
    if parent is None:
        # A trace of its own (a malformed traceparent is ignored, as the propagator does).
        if _ROOT_SHARE < 1.0 and (_ROOT_SHARE == 0.0 or _draw() >= _ROOT_SHARE):
            return None
        context = SpanContext(_bits(128) or 1, _bits(64) or 1)
    else:
        if not _PARENT_BASED and not _parented_sampled(parent.trace_id):
            return None
        context = SpanContext(parent.trace_id, _bits(64) or 1, parent.trace_state)
    if started_s - _offset_read_at > RESYNC_S:
        _resync(time.perf_counter())
    name, attributes = describe(subject)
    return OpenSpan(name, context, parent, SERVER, epoch_ns(started_s), attributes)


def _parented_sampled(trace_id: int) -> bool:
    """always_on, always_off or traceidratio's verdict on a request with a parent."""
    if _PARENTED_BOUND is None:
        return _ROOT_SHARE > 0.0
    return trace_id & _TRACE_ID_LIMIT < _PARENTED_BOUND


def _remote_parent(traceparent: str, tracestate: str | None) -> SpanContext | None:
    """The caller's span, read by OpenTelemetry's W3C propagator; None if it is not valid."""
    from opentelemetry.trace import get_current_span
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {TRACEPARENT: traceparent}
    if tracestate is not None:
        carrier[TRACESTATE] = tracestate
    context = get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
    if not context.is_valid:
        return None
    state = context.trace_state.to_header() if context.trace_state else ""
    return SpanContext(context.trace_id, context.span_id, state, remote=True)


def linked_span(
    name: str,
    links: Sequence[SpanContext],
    started_s: float,
    attributes: dict[str, Any],
    context: SpanContext | None = None,
    kind: int = INTERNAL,
) -> OpenSpan | None:
    """The first span of a trace of its own, linked to the spans of ``links`` (the requests
    of a batch, the request a shadow call mirrors): made whenever there are any, as they
    are sampled (keel makes spans of sampled requests only).

    A batch serves requests from many traces, and a shadow call mirrors one request after
    its answer: each starts a trace of its own. Were it sampled by the ratio, a sampled
    request would mostly lack its batch; following the links, every sampled request's
    batch and shadow call are there. ``context``: made beforehand (``new_context``) when
    a call carries it to another server, whose spans then join this trace; ``kind``:
    ``CLIENT`` for such a call.
    """
    if not ON or not links:
        return None
    return OpenSpan(
        name, context or new_context(), None, kind, epoch_ns(started_s), attributes, tuple(links)
    )


def new_context() -> SpanContext:
    """The context of the first span of a new trace: known before the span is made, so that
    a call can carry it (``traceparent_of``) while the span waits for the call's end."""
    return SpanContext(_bits(128) or 1, _bits(64) or 1)


def traceparent_of(context: SpanContext) -> str:
    """The W3C ``traceparent`` naming ``context`` as the caller, sampled (keel's spans are)."""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-01"


def child_span(
    parent: OpenSpan,
    name: str,
    started_s: float,
    ended_s: float,
    attributes: Mapping[str, Any] | None = None,
    links: tuple[SpanContext, ...] = (),
) -> FinishedSpan:
    """A finished span of ``parent``'s from ``started_s`` to ``ended_s`` (perf_counter),
    linked to the spans of ``links``, queued to be sent."""
    context = parent.context
    span = FinishedSpan(
        name,
        SpanContext(context.trace_id, _bits(64) or 1, context.trace_state),
        context,
        INTERNAL,
        epoch_ns(started_s),
        epoch_ns(ended_s),
        attributes,
        links,
        False,
    )
    queue = QUEUE
    if queue is not None:
        queue.add(span)
    return span


def end_span(
    span: OpenSpan, ended_s: float, attributes: Mapping[str, Any] | None, failed: str | None
) -> FinishedSpan:
    """End ``span`` at ``ended_s`` with its outcome; ``failed`` is the error type, if any."""
    if attributes:
        span.attributes.update(attributes)
    if failed is not None:
        span.attributes["error.type"] = failed
    finished = FinishedSpan(
        span.name,
        span.context,
        span.parent,
        span.kind,
        span.start_ns,
        epoch_ns(ended_s),
        span.attributes,
        span.links,
        failed is not None,
    )
    queue = QUEUE
    if queue is not None:
        queue.add(finished)
    return finished


def outcome_of(status: int) -> str:
    """A request's ``keel.outcome`` from its (HTTP) status: ``ok``, ``refused`` (the client's
    mistake, 4xx) or ``error`` (the server failed or shed it, 5xx)."""
    return "ok" if status < 400 else "refused" if status < 500 else "error"


def trace_response(span: OpenSpan) -> tuple[bytes, bytes]:
    """The ``traceresponse`` header that names ``span``'s trace and itself (sampled)."""
    return _TRACERESPONSE, traceparent_of(span.context).encode()


def trace_id(span: OpenSpan) -> str:
    return f"{span.context.trace_id:032x}"
