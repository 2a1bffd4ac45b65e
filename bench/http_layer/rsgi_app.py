"""keel's inference routes behind granian, through its RSGI interface (issue 23's comparison).

    KEEL_REGISTRY=/tmp/demo-registry KEEL_SERVER__PORT=8181 \\
    HTTP_LAYER_REFS=breast-cancer@production \\
    granian --interface rsgi --workers 1 --runtime-threads 1 --loop uvloop \\
        --port 8181 rsgi_app:app          # run from bench/http_layer/

The same ``InferenceFront`` that keel's own server calls answers the inference
routes, so the model code, batcher, metrics and drift windows are keel's; only
the HTTP layer differs. Other paths (health, metadata) go to keel's Starlette
app through a minimal buffered ASGI bridge. The app's lifespan (load, verify,
warm over HTTP, drain) runs in granian's worker through ``__rsgi_init__`` and
``__rsgi_del__``; ``KEEL_SERVER__PORT`` must be granian's port so that keel's
self warm-up reaches it.

``HTTP_LAYER_ARRIVALS``: granian cannot tell keel how many requests it has read
but not started (keel's own server counts them for the inline batcher). ``none``
(default) passes no count, so an inline batch always waits one loop pass for
company; ``zero`` passes a count that stays zero, so it runs at once. At 64
connections ``none`` measured 13-15k req/s against 9-10k for ``zero``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from typing import Any

from keel.cli.context import open_registry
from keel.configuration import load_settings
from keel.errors import PayloadTooLarge, ProtocolError
from keel.serving.arrivals import Arrivals
from keel.serving.calls import DEADLINE_HEADER, VERSION_HEADER
from keel.serving.protocols.paths import match
from keel.serving.v2_infer import BINARY_HEADER
from keel.web.app import create_app
from keel.web.inference_front import InferenceFront
from keel.web.request_body import ClientGone

log = logging.getLogger("keel.serving")

# The request headers InferenceFront reads (its _READ_HEADERS), fetched one by one.
_READ = tuple(
    (name, name.encode())
    for name in ("content-length", VERSION_HEADER, DEADLINE_HEADER, BINARY_HEADER)
)
# HTTP_LAYER_BODY=whole: a chunked body is read with one ``await proto()`` (no size limit).
_WHOLE_BODY = os.environ.get("HTTP_LAYER_BODY") == "whole"
_HOP_HEADERS = frozenset(("content-length", "connection", "transfer-encoding", "date"))


class KeelRSGI:
    """An RSGI application serving ``refs`` with keel's front."""

    def __init__(self, refs: list[str]) -> None:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        settings = load_settings(None)
        self.settings = settings
        sys.setswitchinterval(settings.server.switch_interval_ms / 1000.0)
        threads = settings.server.inference_threads or len(os.sched_getaffinity(0)) or 1
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="keel-infer")
        arrivals = Arrivals() if os.environ.get("HTTP_LAYER_ARRIVALS") == "zero" else None
        from keel.serving.model_manager import ModelManager

        manager = ModelManager(open_registry(settings), settings, self.executor, arrivals)
        self.front: InferenceFront = create_app(manager, settings, refs)
        self.limit = settings.server.max_body_bytes
        self._lifespan: AbstractAsyncContextManager[None] | None = None

    # -- RSGI hooks: granian calls these in its worker, before and after serving ----------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._lifespan = self.front.lifespan()
        loop.run_until_complete(self._lifespan.__aenter__())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.front.state.shutting_down = True
        if self._lifespan is not None:
            loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        route = match(scope.path)
        if route is None:
            await self._asgi(scope, proto)
            return
        headers = scope.headers
        raw = [(raw_name, value.encode("latin-1")) for name, raw_name in _READ
               if (value := headers.get(name)) is not None]  # fmt: skip

        async def body(read: Mapping[str, str]) -> bytes:
            return await self._read_body(proto, read)

        reply = await self.front.answer(route, scope.method, raw, body)
        if reply is None:
            return
        out = [("content-type", reply.content_type.decode("latin-1"))]
        out += [(n.decode("latin-1"), v.decode("latin-1")) for n, v in reply.headers]
        proto.response_bytes(reply.status, out, reply.body)

    async def _read_body(self, proto: Any, headers: Mapping[str, str]) -> bytes:
        """The body under the size limit, as keel's read_body does for ASGI."""
        limit = self.limit
        declared = headers.get("content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise ProtocolError(f"Content-Length {declared!r} is not a number") from None
            if length > limit:
                raise PayloadTooLarge(f"the body is {length} bytes; the limit is {limit}")
            try:
                return await proto()  # one call when the length is known and allowed
            except Exception as exc:  # granian raises when the client went away
                raise ClientGone from exc
        if _WHOLE_BODY:  # granian buffers it in Rust: fast, but nothing bounds it
            try:
                return await proto()
            except Exception as exc:
                raise ClientGone from exc
        # Without a length, counted as it streams (proto() alone would read it all, unbounded),
        # into one buffer, not a list of chunk objects.
        buffer = bytearray()
        try:
            async for chunk in proto:
                buffer += chunk
                if len(buffer) > limit:
                    raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        except PayloadTooLarge:
            raise
        except Exception as exc:
            raise ClientGone from exc
        return bytes(buffer)

    async def _asgi(self, scope: Any, proto: Any) -> None:
        """Health, metadata and the rest: keel's Starlette app, buffered."""
        asgi_scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": scope.http_version,
            "method": scope.method,
            "scheme": scope.scheme,
            "path": scope.path,
            "raw_path": scope.path.encode(),
            "query_string": scope.query_string.encode(),
            "root_path": "",
            "headers": [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in scope.headers.items()
            ],
            "client": None,
            "server": None,
            "state": {},
        }
        body = await proto() if scope.method not in ("GET", "HEAD") else b""
        delivered = False
        status = 500
        out_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> MutableMapping[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await proto.client_disconnect()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers = [
                    (bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
                    for n, v in message.get("headers", ())
                    if bytes(n).decode("latin-1").lower() not in _HOP_HEADERS
                ]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))

        try:
            await self.front.app(asgi_scope, receive, send)
        except Exception:
            log.exception("unexpected error in %s %s", scope.method, scope.path)
            proto.response_bytes(
                500, [("content-type", "application/json")], b'{"error":"internal"}'
            )
            return
        proto.response_bytes(status, out_headers, b"".join(chunks))


app = KeelRSGI(
    [r for r in os.environ.get("HTTP_LAYER_REFS", "breast-cancer@production").split(",") if r]
)
