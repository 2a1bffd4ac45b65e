"""A loopback HTTP proxy in front of a real server that can be told to misbehave.

Forwards every request to the upstream server unchanged, unless its mode says
otherwise: answer 500, answer late, never answer, or close the connection. It
stands between keel and a real remote candidate so a test can make that
candidate fail in each way a real one does, without changing the candidate.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

FORWARD = "forward"
ERROR = "error"  # 500 with a body
DELAY = "delay"  # forwards, after delay_s
HANG = "hang"  # reads the request, never answers
CLOSE = "close"  # reads the request, closes the connection without an answer


@dataclass
class FaultProxy:
    upstream: str
    mode: str = FORWARD
    delay_s: float = 0.0
    requests: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def set(self, mode: str, delay_s: float = 0.0) -> None:
        self.mode, self.delay_s = mode, delay_s


def _handler(proxy: FaultProxy, client: httpx.Client) -> type[BaseHTTPRequestHandler]:

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self._handle(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            self._handle(self.rfile.read(length))

        def _handle(self, body: bytes) -> None:
            proxy.requests += 1
            mode = proxy.mode
            if mode == HANG:
                proxy.released.wait()
                self.close_connection = True
                return
            if mode == CLOSE:
                self.close_connection = True
                return
            if mode == ERROR:
                self._answer(500, b'{"error": "candidate exploded"}', "application/json")
                return
            if mode == DELAY:
                time.sleep(proxy.delay_s)
            headers = {k: v for k, v in self.headers.items() if k.lower() == "content-type"}
            upstream = client.request(self.command, self.path, content=body, headers=headers)
            self._answer(
                upstream.status_code,
                upstream.content,
                upstream.headers.get("content-type", "application/json"),
            )

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A running proxy to ``upstream``; stopped (hanging requests released) on exit."""
    proxy = FaultProxy(upstream)
    client = httpx.Client(base_url=upstream, timeout=30)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy, client))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.released.set()
        server.shutdown()
        server.server_close()
        # Its keep-alive sockets would otherwise be collected inside a later test,
        # whose unraisable-exception check fails on the ResourceWarning.
        client.close()
