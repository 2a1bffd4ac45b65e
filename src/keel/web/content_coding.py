"""Compressed bodies: gzip and deflate requests inflated under the body limit, big answers gzipped.

A request's ``Content-Encoding`` is undone before anything reads the body, and
the body limit (``server.max_body_bytes``) applies to what comes out of it as it
is inflated: a small body that would inflate to gigabytes (a decompression bomb)
is refused with 413 once the limit is passed, having cost at most the limit in
memory. Any other coding is refused with 415 naming it; a body that does not
inflate is a 400. An answer is gzipped when the client accepts gzip and the
answer is large enough to be worth the CPU (``COMPRESS_FROM`` bytes): the answers
of a few rows are smaller than that and are never compressed.
"""

from __future__ import annotations

import zlib

from keel.errors import ProtocolError, UnsupportedEncoding
from keel.serving.calls import Reply
from keel.web.request_body import body_too_large

# zlib's window bits: gzip's wrapper, and zlib's (HTTP's "deflate").
_WINDOWS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Inflated a piece at a time, so that a bomb is stopped within this much of the limit.
_STEP = 1 << 16
# Answers smaller than this go out as they are: gzip would cost more CPU than it saves.
COMPRESS_FROM = 8 * 1024
_GZIP_LEVEL = 1
_ENCODED_HEADERS = ((b"content-encoding", b"gzip"), (b"vary", b"accept-encoding"))


def decoded_body(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` with its content codings undone, last applied first; at most ``limit`` bytes."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    for coding in reversed(codings):
        if coding in ("identity", ""):
            continue
        window = _WINDOWS.get(coding)
        if window is None:
            raise UnsupportedEncoding(
                f"Content-Encoding {coding!r} is not supported; send the body as it is, "
                "or gzip or deflate it"
            )
        body = _inflate(body, coding, window, limit)
    return body


def _inflate(body: bytes, coding: str, window: int, limit: int) -> bytes:
    inflater = zlib.decompressobj(window)
    pieces: list[bytes] = []
    size = 0
    pending = body
    try:
        while pending:
            piece = inflater.decompress(pending, _STEP)
            size += len(piece)
            if size > limit:
                raise body_too_large(limit)
            pieces.append(piece)
            pending = inflater.unconsumed_tail
            if inflater.eof:
                break
        # What zlib still holds once every input byte is in: at most its window.
        rest = inflater.flush()
        if size + len(rest) > limit:
            raise body_too_large(limit)
        pieces.append(rest)
        if not inflater.eof:
            raise ProtocolError(f"the {coding} body ends before its compressed data does")
    except zlib.error as exc:
        # zlib says "Error -3 while decompressing data: incorrect header check".
        reason = str(exc).rpartition(": ")[2]
        raise ProtocolError(f"the body is not valid {coding} data ({reason})") from None
    if inflater.unused_data:
        raise ProtocolError(f"the {coding} body has bytes after its compressed data")
    return b"".join(pieces)


def compressed(reply: Reply, accept_encoding: str) -> Reply:
    """``reply`` gzipped when it is large and ``accept_encoding`` takes gzip; else as it is."""
    if len(reply.body) < COMPRESS_FROM or not _accepts_gzip(accept_encoding):
        return reply
    body = zlib.compress(reply.body, _GZIP_LEVEL, wbits=16 + zlib.MAX_WBITS)
    return reply._replace(body=body, headers=[*reply.headers, *_ENCODED_HEADERS])


def _accepts_gzip(accept_encoding: str) -> bool:
    for item in accept_encoding.split(","):
        coding, _, parameters = item.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = parameters.strip().lower().removeprefix("q=")
        try:
            return not parameters or float(quality) > 0
        except ValueError:
            return False
    return False
