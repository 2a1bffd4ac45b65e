"""An OTLP trace receiver on loopback, over http/protobuf and gRPC, for the tracing tests.

It decodes what keel's exporter sends with OpenTelemetry's own protocol schema
(``opentelemetry-proto``'s ``ExportTraceServiceRequest`` and ``TraceService``), so
a test reads exactly what a collector would have received.

It stands where Jaeger was meant to (issue 28): this machine reaches PyPI, Debian
and npm only, and Jaeger is on none of them (it is built from its Go module, and
Go modules cannot be fetched here), so no real trace backend can be installed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from keel_server import free_port
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as a collector stores it: ids in hex, times in ns, attributes as values."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    # (trace id, span id) of each span it links to.
    links: list[tuple[str, str]]
    status_code: int
    resource: dict[str, Any]

    @property
    def failed(self) -> bool:
        return self.status_code == 2  # STATUS_CODE_ERROR


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return None if kind is None else getattr(any_value, kind)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass
class OtlpReceiver:
    """Every span received, and the addresses it listens on."""

    http_endpoint: str = ""
    grpc_endpoint: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    # Set to make the next exports fail (a collector that is down), with this HTTP status.
    refuse_with: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes=_attributes(span.attributes),
                            links=[
                                (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                            ],
                            status_code=span.status.code,
                            resource=resource,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.spans.extend(received)

    def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], what: str, timeout: float = 30
    ) -> list[ReceivedSpan]:
        """The spans received, once ``condition`` holds for them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if condition(spans):
                return spans
            assert time.monotonic() < deadline, f"no {what} in {timeout} s; received: {spans}"
            time.sleep(0.05)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]


def _http_handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            if receiver.refuse_with is not None:
                self.send_error(receiver.refuse_with)
                return
            receiver.take(trace_service_pb2.ExportTraceServiceRequest.FromString(body))
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read the spans, not the receiver's log."""

    return Handler


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if self.receiver.refuse_with is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "refusing, as the test asked")
        self.receiver.take(request)
        return trace_service_pb2.ExportTraceServiceResponse()


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver listening on http/protobuf and gRPC until the block ends."""
    receiver = OtlpReceiver()
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), _http_handler(receiver))
    receiver.http_endpoint = f"http://127.0.0.1:{http_server.server_address[1]}"
    serving = threading.Thread(target=http_server.serve_forever, daemon=True)
    serving.start()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(receiver), grpc_server)
    port = free_port()
    grpc_server.add_insecure_port(f"127.0.0.1:{port}")
    grpc_server.start()
    receiver.grpc_endpoint = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        grpc_server.stop(0)
        http_server.shutdown()
        http_server.server_close()
