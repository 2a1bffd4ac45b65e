"""The spans keel makes, as plain records: what a span is, once, for the encoder and the tests.

A span here is what the OTLP protocol carries and nothing more: ids as integers,
the W3C trace state as its header, times in Unix nanoseconds. keel's spans are all
sampled (a request the sampler passes by has none), so the trace flags are always
``01``. The OpenTelemetry SDK's span and context objects carry a lock, checks and
a dozen fields each; making seven of them per sampled request cost more than
keel's whole answer (bench/tracing_overhead.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

# OTLP's SpanKind values.
INTERNAL = 1
SERVER = 2
CLIENT = 3


class SpanContext(NamedTuple):
    """Where a span is: its trace, itself, the trace state it carries, whether it is the
    caller's (a remote parent, read from a ``traceparent``)."""

    trace_id: int
    span_id: int
    trace_state: str = ""
    remote: bool = False


class FinishedSpan(NamedTuple):
    """A span that has ended, as it is sent."""

    name: str
    context: SpanContext
    parent: SpanContext | None
    kind: int
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any] | None
    links: tuple[SpanContext, ...]
    failed: bool
