"""The ASGI front door: inference requests are answered here, everything else goes to Starlette.

For a small tabular model a request is almost all serving overhead, and a
Starlette route (request object, middleware stack, router scan, response
object) cost about as much CPU as the rest of keel's work put together. The
two inference routes therefore skip it: the path is matched by splitting it,
only the headers keel reads are decoded, the body is read straight from the
ASGI channel under the size limit, and the reply goes out as two messages.
Health, metadata, the repository API and the OpenAPI document stay on
Starlette, where clarity matters more than microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from keel import tracing
from keel.serving.calls import DEADLINE_HEADER, VERSION_HEADER, Call, Reply
from keel.serving.data_plane import Codec
from keel.serving.protocols.paths import Route, match, template
from keel.serving.records_api import RECORDS
from keel.serving.served_version import ServedVersion
from keel.serving.v2_infer import BINARY_HEADER, V2_INFER
from keel.web.content_coding import compressed, decoded_body
from keel.web.context import ServerState
from keel.web.http_errors import error_reply
from keel.web.request_body import ClientGone, Receive, read_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# Each route's codec, by the endpoint label its requests are counted under.
CODECS: dict[str, Codec[Reply]] = {"records": RECORDS, "v2_infer": V2_INFER}
_READ_HEADERS = frozenset(
    name.encode()
    for name in (
        "content-length",
        "content-encoding",
        "accept-encoding",
        VERSION_HEADER,
        DEADLINE_HEADER,
        BINARY_HEADER,
        tracing.TRACEPARENT,
        tracing.TRACESTATE,
    )
)
_METHOD_NOT_ALLOWED = Reply(
    405, b'{"error":"method not allowed; use POST"}', headers=[(b"allow", b"POST")]
)


BodySource = Callable[[Mapping[str, str]], Awaitable[bytes]]
"""Reads a request's body once its headers are known (the ASGI channel, or bytes in hand)."""


class InferenceFront:
    """Answers the inference routes itself and passes every other request to ``app``.

    As an ASGI app it serves under any ASGI server (and in-process tests); keel's
    own HTTP server calls ``answer`` directly with the body it has already read.
    """

    def __init__(
        self,
        app: ASGIApp,
        state: ServerState,
        lifespan: Callable[[], AbstractAsyncContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self.app = app
        self.state = state
        self.plane = state.plane
        # Also the most a compressed body may inflate to (content_coding).
        self.max_body_bytes = state.settings.server.max_body_bytes
        # Start-up and shutdown of the app (load, verify, warm; drain), for a server
        # that runs them itself instead of through ASGI lifespan messages.
        self.lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = match(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes

        def body(headers: Mapping[str, str]) -> Awaitable[bytes]:
            return read_body(receive, headers, limit)

        reply = await self.answer(route, scope["method"], scope["headers"], body)
        if reply is not None:
            await _send(send, reply)

    async def answer(
        self,
        route: Route,
        method: str,
        raw_headers: Iterable[tuple[bytes, bytes]],
        body: bytes | BodySource,
        began_at: float | None = None,
    ) -> Reply | None:
        """The reply to one inference request; None when the client left before its body came.

        ``began_at``: when the request's first bytes came (``time.perf_counter()``), where
        the server knows it: a traced request's span starts there.
        """
        if method != "POST":
            return _METHOD_NOT_ALLOWED
        endpoint, name, path_version = route
        started = time.perf_counter()
        version: ServedVersion | None = None
        accept_encoding: str | None = None
        span = None
        activity = self.state.activity
        activity.started()
        try:
            headers = {
                key.decode("latin-1"): value.decode("latin-1")
                for key, value in raw_headers
                if key in _READ_HEADERS
            }
            if tracing.ON:
                span = tracing.request_span(
                    headers, started if began_at is None else began_at, _describe, route
                )
            accept_encoding = headers.get("accept-encoding")
            # Resolved first so that every answer, refusals included, counts for its version;
            # a request for an unknown model or version counts nowhere (no new series).
            version = self.plane.find(name, path_version, headers)
            if span is not None and version.metrics.warming:
                # The server's own warm-up request is no client's: its span, never ended,
                # is never sent.
                span = None
            version.metrics.in_flight += 1
            try:
                if not isinstance(body, bytes):
                    body = await body(headers)
                content_encoding = headers.get("content-encoding")
                if content_encoding is not None:
                    # Off the loop: a bomb inflates up to the limit (16 MiB by default),
                    # tens of milliseconds that every other request would wait.
                    body = await asyncio.to_thread(
                        decoded_body, body, content_encoding, self.max_body_bytes
                    )
                if span is not None:
                    _read_span(span, headers, body, began_at, started)
                reply = await self.plane.infer(
                    version, CODECS[endpoint], Call(headers, body, started, span)
                )
            finally:
                version.metrics.in_flight -= 1
        except asyncio.CancelledError:
            raise
        except ClientGone:
            return None
        except Exception as exc:  # noqa: BLE001 - the error boundary maps every exception
            reply = error_reply(exc)
            if version is not None:
                version.metrics.refused(exc)
        finally:
            activity.finished()
        if accept_encoding is not None and reply.status == 200:
            reply = compressed(reply, accept_encoding)
        answered_at = time.perf_counter()
        if span is None:
            if version is not None:
                version.metrics.answered(endpoint, reply.status, answered_at - started)
            return reply
        if version is not None:
            # A traced request's latency is its bucket's exemplar: from a p99 to a trace.
            version.metrics.answered(
                endpoint, reply.status, answered_at - started, tracing.trace_id(span)
            )
        return _end_request_span(span, reply, version, answered_at)


def _describe(route: Route) -> tuple[str, dict[str, Any]]:
    """A traced request's span name and attributes (OpenTelemetry's HTTP server conventions)."""
    endpoint, name, _ = route
    path = template(route)
    return f"POST {path}", {
        "http.request.method": "POST",
        "http.route": path,
        "keel.endpoint": endpoint,
        "keel.model.name": name,
    }


def _read_span(
    span: Any, headers: Mapping[str, str], body: bytes, began_at: float | None, started: float
) -> None:
    """The body's read (from the request's first bytes, where known) and inflation."""
    attributes: dict[str, Any] = {"http.request.body.size": len(body)}
    if (encoding := headers.get("content-encoding")) is not None:
        attributes["http.request.header.content-encoding"] = encoding
    read_from = started if began_at is None else began_at
    tracing.child_span(span, "keel.read_body", read_from, time.perf_counter(), attributes)


def _end_request_span(
    span: Any, reply: Reply, version: ServedVersion | None, answered_at: float
) -> Reply:
    """End a traced request's span with its outcome; the answer names the trace."""
    status = reply.status
    attributes: dict[str, Any] = {
        "http.response.status_code": status,
        "keel.outcome": tracing.outcome_of(status),
    }
    if version is not None:
        attributes["keel.model.version"] = version.label
    # A server span is an error only when the server failed (5xx), shedding included:
    # a client's mistake (4xx) is the server doing its job (OpenTelemetry's HTTP rules).
    tracing.end_span(span, answered_at, attributes, str(status) if status >= 500 else None)
    return reply._replace(headers=[*reply.headers, tracing.trace_response(span)])


async def _send(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
