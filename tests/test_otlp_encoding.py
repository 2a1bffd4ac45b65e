"""keel's OTLP encoding, decoded with OpenTelemetry's own schema, against the SDK's encoder
given the same spans as its own objects."""

from __future__ import annotations

import importlib.metadata
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Status, StatusCode

from keel import tracing
from keel.otlp_encoding import Encoder
from keel.span_records import FinishedSpan, SpanContext

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
# One resource and scope for both encoders (Resource.create would draw an instance id).
RESOURCE = Resource({"service.name": "keel", "deployment.environment": "test", "n": 2})
SCOPE = InstrumentationScope("keel", importlib.metadata.version("keel"))


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process, its spans kept in memory (the SDK's own exporter)."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    yield _started()
    tracing.stop()


def _started() -> InMemorySpanExporter:
    settings_ = tracing.settings_from(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_BSP_SCHEDULE_DELAY": "3600000"}
    )
    assert settings_ is not None
    tracing.start(settings_)
    assert tracing.QUEUE is not None
    memory = InMemorySpanExporter()
    tracing.QUEUE.exporter = memory
    return memory


def _spans(memory: InMemorySpanExporter, attributes: dict[str, Any]) -> list[FinishedSpan]:
    """A request's spans as keel makes them: continued, with steps, a batch, an error."""
    now = time.perf_counter()
    carrier = {"traceparent": TRACEPARENT, "tracestate": "vendor=1,other=2"}
    request = tracing.request_span(
        carrier, now, lambda _: ("POST /v2/models/{name}/infer", dict(attributes)), None
    )
    assert request is not None
    step = tracing.child_span(request, "keel.decode", now, now + 1e-5, attributes)
    batch = tracing.linked_span("keel.batch", [request.context], now, {"rows": 3})
    assert batch is not None
    tracing.child_span(request, "keel.queue", now, now + 2e-5, None, (batch.context,))
    tracing.child_span(batch, "keel.model_run", now, now + 3e-5, {"calls": 1})
    tracing.end_span(batch, now + 4e-5, None, "RuntimeFailure")
    tracing.end_span(request, now + 5e-5, {"http.response.status_code": 503}, "503")
    assert tracing.QUEUE is not None
    tracing.QUEUE.force_flush()
    spans: list[FinishedSpan] = list(memory.get_finished_spans())  # type: ignore[arg-type]
    assert step in spans
    memory.clear()
    return spans


def _as_sdk_spans(spans: list[FinishedSpan]) -> list[ReadableSpan]:
    """The same spans as the SDK's own objects, for its encoder."""
    resource, scope = RESOURCE, SCOPE

    def context(of: SpanContext) -> trace.SpanContext:
        state = trace.TraceState.from_header([of.trace_state]) if of.trace_state else None
        return trace.SpanContext(of.trace_id, of.span_id, of.remote, trace.TraceFlags(1), state)

    return [
        ReadableSpan(
            span.name,
            context(span.context),
            None if span.parent is None else context(span.parent),
            resource,
            span.attributes,
            links=[trace.Link(context(linked)) for linked in span.links],
            kind=trace.SpanKind(span.kind - 1),
            status=Status(StatusCode.ERROR if span.failed else StatusCode.UNSET),
            start_time=span.start_ns,
            end_time=span.end_ns,
            instrumentation_scope=scope,
        )
        for span in spans
    ]


def _encoded(spans: list[FinishedSpan]) -> ExportTraceServiceRequest:
    encode = Encoder(RESOURCE, SCOPE)
    return ExportTraceServiceRequest.FromString(encode(spans))


def _comparable(message: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """What both encodings must agree on, span by span."""
    out = []
    for resource_spans in message.resource_spans:
        resource = {kv.key: kv.value for kv in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                out.append(
                    {
                        "resource": resource,
                        "scope": (scope_spans.scope.name, scope_spans.scope.version),
                        "ids": (span.trace_id, span.span_id, span.parent_span_id),
                        "trace_state": span.trace_state,
                        "name": span.name,
                        "kind": span.kind,
                        "times": (span.start_time_unix_nano, span.end_time_unix_nano),
                        "attributes": [(kv.key, kv.value) for kv in span.attributes],
                        # (The SDK's encoder leaves a link's trace state out; keel writes it.)
                        "links": [(link.trace_id, link.span_id) for link in span.links],
                        "status": (span.status.code, span.status.message),
                        # Whether the parent was remote; the SDK leaves the low byte out.
                        "remote_bits": span.flags & 0x300,
                        "status_code": span.status.code,
                    }
                )
    return out


def test_every_field_keel_writes_decodes_as_the_sdk_encodes_it(
    exported: InMemorySpanExporter,
) -> None:
    spans = _spans(exported, {"keel.model.name": "m", "rows": 3, "ratio": 0.5, "ok": True})
    mine = _encoded(spans)
    assert _comparable(mine) == _comparable(encode_spans(_as_sdk_spans(spans)))
    assert len(_comparable(mine)) == 5
    (batch,) = [s for s in mine.resource_spans[0].scope_spans[0].spans if s.name == "keel.batch"]
    assert [link.trace_state for link in batch.links] == ["vendor=1,other=2"]
    # The low byte of flags is the W3C trace flags (all sampled), as the protocol says.
    assert all(span.flags & 0x01 for span in mine.resource_spans[0].scope_spans[0].spans)


_VALUES = st.one_of(
    st.text(max_size=20),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=4),
    st.lists(st.text(max_size=5), max_size=4),
)


@settings(max_examples=60, deadline=None)
@given(attributes=st.dictionaries(st.text(min_size=1, max_size=12), _VALUES, max_size=6))
def test_any_attribute_value_decodes_as_the_sdk_encodes_it(attributes: dict[str, Any]) -> None:
    memory = _started()
    try:
        # Twice: the second time from the encoder's memory of attributes it has written.
        for _ in range(2):
            spans = _spans(memory, attributes)
            assert _comparable(_encoded(spans)) == _comparable(encode_spans(_as_sdk_spans(spans)))
    finally:
        tracing.stop()


def test_true_one_and_one_point_zero_are_three_values(exported: InMemorySpanExporter) -> None:
    for value in (True, 1, 1.0):
        spans = _spans(exported, {"value": value})
        assert _comparable(_encoded(spans)) == _comparable(encode_spans(_as_sdk_spans(spans)))
