"""An OTLP http/protobuf endpoint that takes every export and reads nothing of it.

The tracing benchmark's collector: it answers each ``POST /v1/traces`` with an empty
``ExportTraceServiceResponse`` (zero bytes is that message) as fast as it can, so
what the benchmark measures is keel's cost of tracing, not a collector's. It counts
the exports and bytes it took, for ``GET /count``.

    python bench/otlp_sink.py PORT
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    exports = 0
    received_bytes = 0

    def do_POST(self) -> None:
        size = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(size)
        Sink.exports += 1
        Sink.received_bytes += size
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        body = json.dumps({"exports": Sink.exports, "bytes": Sink.received_bytes}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
