"""Running an ASGI app on one request that keel's HTTP server has read whole.

Health, metadata, metrics, the repository API and the OpenAPI document are
Starlette routes; they are not the hot path, so they keep the ASGI interface and
are called through this bridge with the complete body and a buffered answer.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from keel.serving.calls import Reply
from keel.web.http_connection import Exchange, HttpConnection
from keel.web.http_errors import INTERNAL_ERROR
from keel.web.inference_front import ASGIApp

log = logging.getLogger("keel.web")

Message = MutableMapping[str, Any]

# Computed by the connection for every answer; an app's own would be a duplicate.
_CONNECTION_HEADERS = frozenset((b"content-length", b"connection", b"transfer-encoding", b"date"))


async def answer_with_app(
    app: ASGIApp,
    exchange: Exchange,
    connection: HttpConnection,
    server: tuple[str, int] | None,
) -> Reply:
    """The app's answer to ``exchange``, buffered; a 500 if it fails before answering."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": exchange.http_version,
        "method": exchange.method,
        "scheme": "http",
        "path": exchange.path,
        "raw_path": exchange.raw_path,
        "query_string": exchange.query,
        "root_path": "",
        "headers": exchange.headers,
        "client": connection.peer,
        "server": server,
        # Whether it came over a worker's private socket (from another worker of the server).
        "state": {"private": connection.private},
    }
    delivered = False
    status = 0
    content_type = b""
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    finished = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": exchange.body, "more_body": False}
        await connection.gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, content_type, headers, finished
        if message["type"] == "http.response.start":
            status = message["status"]
            for raw_name, value in message.get("headers", ()):
                name = bytes(raw_name).lower()
                if name == b"content-type":
                    content_type = bytes(value)
                elif name not in _CONNECTION_HEADERS:
                    headers.append((name, bytes(value)))
        elif message["type"] == "http.response.body" and not finished:
            chunks.append(bytes(message.get("body", b"")))
            finished = not message.get("more_body", False)

    try:
        await app(scope, receive, send)
    except Exception:
        log.exception("unexpected error in %s %s", exchange.method, exchange.path)
        if not finished:
            return INTERNAL_ERROR
    if not status:
        log.error("%s %s ended without an answer", exchange.method, exchange.path)
        return INTERNAL_ERROR
    return Reply(status, b"".join(chunks), content_type, headers)
