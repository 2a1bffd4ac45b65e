"""Reading a request body without letting a large one into memory."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from keel.errors import PayloadTooLarge, ProtocolError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""The ASGI receive channel of one request."""


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before a byte is read;
    a chunked body is counted as it streams in and cut off at the limit.
    """
    declared = headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ProtocolError(f"Content-Length {declared!r} is not a number") from None
        if length > limit:
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)
