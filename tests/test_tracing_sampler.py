"""The sampler keel draws before any span is made, held to OTEL_TRACES_SAMPLER's rules."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from keel import tracing
from keel.errors import InvalidConfig
from keel.span_records import SpanContext

PARENT_SPAN = "b7ad6b7169203331"


def traceparent(trace_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{PARENT_SPAN}-{'01' if sampled else '00'}"


@pytest.fixture
def sampler() -> Iterator[None]:
    yield
    tracing.stop(timeout_s=0)


def start(sampler: str, ratio: str | None = None) -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_SAMPLER": sampler}
    if ratio is not None:
        environ["OTEL_TRACES_SAMPLER_ARG"] = ratio
    settings = tracing.settings_from(environ)
    assert settings is not None
    tracing.start(settings)


def span_for(carrier: dict[str, str]) -> tracing.OpenSpan | None:
    return tracing.request_span(carrier, time.perf_counter(), lambda _: ("POST /x", {}), None)


@pytest.mark.usefixtures("sampler")
def test_parent_based_ratio_zero_starts_no_trace_but_continues_a_sampled_caller() -> None:
    start("parentbased_traceidratio", "0")
    assert all(span_for({}) is None for _ in range(200))
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    span = span_for({"traceparent": traceparent(trace_id), "tracestate": "vendor=1"})
    assert span is not None
    assert f"{span.context.trace_id:032x}" == trace_id
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT_SPAN
    assert span.parent.remote
    assert span.context.trace_state == "vendor=1"
    assert span_for({"traceparent": traceparent(trace_id, sampled=False)}) is None


@pytest.mark.usefixtures("sampler")
def test_a_ratio_of_new_traces_is_drawn() -> None:
    start("parentbased_traceidratio", "0.25")
    traced = sum(span_for({}) is not None for _ in range(4000))
    assert 800 < traced < 1200


@pytest.mark.usefixtures("sampler")
def test_traceidratio_without_parent_basing_judges_a_callers_trace_by_its_id() -> None:
    start("traceidratio", "0.5")
    # OpenTelemetry's TraceIdRatioBased: the trace id's low 64 bits below ratio x 2^64.
    low = "f" * 16 + "0" * 16
    high = "0" * 16 + "f" * 16
    assert span_for({"traceparent": traceparent(low, sampled=False)}) is not None
    assert span_for({"traceparent": traceparent(high)}) is None


@pytest.mark.usefixtures("sampler")
def test_always_off_traces_nothing_and_always_on_everything() -> None:
    start("always_off")
    assert span_for({}) is None
    assert span_for({"traceparent": traceparent("1" * 32)}) is None
    tracing.stop(timeout_s=0)
    start("always_on")
    assert span_for({"traceparent": traceparent("1" * 32, sampled=False)}) is not None


@pytest.mark.usefixtures("sampler")
@pytest.mark.parametrize(
    "malformed",
    [
        "00-" + "0" * 32 + "-" + PARENT_SPAN + "-01",  # an all-zero trace id
        "00-" + "g" * 32 + "-" + PARENT_SPAN + "-01",  # not hex
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",  # too short
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz",  # flags not hex
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0G",
    ],
)
def test_a_malformed_traceparent_is_ignored_and_a_trace_of_its_own_begins(malformed: str) -> None:
    start("parentbased_always_on")
    span = span_for({"traceparent": malformed})
    assert span is not None
    assert span.parent is None
    assert span.context.trace_id != 0


def test_off_nothing_is_made() -> None:
    assert not tracing.ON
    assert span_for({"traceparent": traceparent("1" * 32)}) is None
    assert tracing.linked_span("keel.batch", [], time.perf_counter(), {}) is None
    assert tracing.linked_span("keel.batch", [SpanContext(1, 1)], time.perf_counter(), {}) is None


def test_a_bare_host_and_port_is_an_endpoint_over_grpc_only() -> None:
    grpc = tracing.settings_from(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert grpc is not None
    assert grpc.endpoint == "collector:4317"
    refused = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is 'collector:4318'"
    with pytest.raises(InvalidConfig, match=refused):
        tracing.settings_from({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"})
