"""Reading a request body without letting a large one into memory."""

from __future__ import annotations

from starlette.requests import Request

from keel.errors import PayloadTooLarge, ProtocolError


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or PayloadTooLarge as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before a byte is read;
    a chunked body is counted as it streams in and cut off at the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ProtocolError(f"Content-Length {declared!r} is not a number") from None
        if length > limit:
            raise PayloadTooLarge(f"the body is {length} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
