"""A request body's size limit, and reading a body from ASGI without letting a large one in.

The limit (``server.max_body_bytes``) is one rule with one wording, whichever server
read the request: keel's HTTP connection counts the bytes as httptools hands them
over, ``read_body`` as the ASGI channel does; both refuse with ``body_too_large``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any

from keel.errors import PayloadTooLarge, ProtocolError

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
"""The ASGI receive channel of one request."""


def body_too_large(
    limit: int, declared: int | None = None, coding: str | None = None
) -> PayloadTooLarge:
    """The refusal of a body over ``limit`` bytes: by its declared length, as it streams, or
    as it inflates from ``coding`` (the limit holds for what the model would be given)."""
    if declared is not None:
        return PayloadTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    if coding is not None:
        return PayloadTooLarge(
            f"the {coding} body inflates past the limit of {limit} bytes "
            "(the limit is on the body once inflated)"
        )
    return PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")


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
            raise body_too_large(limit, length)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise body_too_large(limit)
        if not message.get("more_body", False):
            if not chunks:
                return chunk
            chunks.append(chunk)
            return b"".join(chunks)
        chunks.append(chunk)
