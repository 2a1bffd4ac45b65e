"""Compressed bodies: gzip and deflate requests inflated under the body limit, big answers gzipped.

A request's ``Content-Encoding`` is undone before anything reads the body, and
the body limit (``server.max_body_bytes``) applies to what comes out of it as it
is inflated: a small body that would inflate to gigabytes (a decompression bomb)
is refused with 413 once the limit is passed, having cost at most the limit in
memory. Every coding is checked before any is undone: one that is neither gzip
nor deflate is refused with 415 naming it, and so are more than ``MAX_CODINGS``
(each would inflate up to the limit again); a body that does not inflate is a 400.
An answer is gzipped when the client accepts gzip and the answer is large enough
to be worth the CPU (``COMPRESS_FROM`` bytes): the answers of a few rows are
smaller than that and are never compressed.
"""

from __future__ import annotations

import zlib

from keel.errors import ProtocolError, UnsupportedEncoding
from keel.serving.calls import Reply
from keel.web.request_body import body_too_large

_GZIP = 16 + zlib.MAX_WBITS
# zlib's window bits: gzip's wrapper, and zlib's (HTTP's "deflate"); a deflate body
# without the zlib wrapper, as some clients send it, is tried as raw deflate too.
_WINDOWS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": zlib.MAX_WBITS}
_RAW_DEFLATE = -zlib.MAX_WBITS
_IDENTITY = frozenset({"identity", ""})
# Codings undone in a row at most: clients send one; each more could cost the limit again.
MAX_CODINGS = 2
# Inflated a piece at a time, so that a bomb is stopped within this much of the limit.
_STEP = 1 << 16
# Answers smaller than this go out as they are: gzip would cost more CPU than it saves.
COMPRESS_FROM = 8 * 1024
_GZIP_LEVEL = 1
_ENCODED_HEADERS = ((b"content-encoding", b"gzip"), (b"vary", b"accept-encoding"))


def decoded_body(body: bytes, content_encoding: str, limit: int) -> bytes:
    """``body`` with its content codings undone, last applied first; at most ``limit`` bytes."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c not in _IDENTITY]
    for coding in codings:
        if coding not in _WINDOWS:
            raise UnsupportedEncoding(
                f"Content-Encoding {coding!r} is not supported; send the body as it is, "
                "or gzip or deflate it"
            )
    if len(codings) > MAX_CODINGS:
        raise UnsupportedEncoding(
            f"the body has {len(codings)} content codings; keel undoes {MAX_CODINGS} at most"
        )
    for coding in reversed(codings):
        if body:  # an empty body is empty in every coding
            body = _inflate(body, coding, _WINDOWS[coding], limit)
    return body


def _inflate(body: bytes, coding: str, window: int, limit: int) -> bytes:
    out = bytearray()
    try:
        rest = _inflate_member(body, coding, window, limit, out)
        # A gzip body may hold several members one after another (RFC 1952).
        while rest and window == _GZIP:
            rest = _inflate_member(rest, coding, window, limit, out)
    except zlib.error as exc:
        if window != zlib.MAX_WBITS or out:
            # zlib says "Error -3 while decompressing data: incorrect header check".
            reason = str(exc).rpartition(": ")[2]
            raise ProtocolError(f"the body is not valid {coding} data ({reason})") from None
        return _inflate(body, coding, _RAW_DEFLATE, limit)
    if rest:
        raise ProtocolError(f"the {coding} body has bytes after its compressed data")
    return bytes(out)


def _inflate_member(data: bytes, coding: str, window: int, limit: int, out: bytearray) -> bytes:
    """Inflate one compressed stream from ``data`` into ``out``; returns the bytes after it."""
    inflater = zlib.decompressobj(window)
    pending = data
    while pending and not inflater.eof:
        out += inflater.decompress(pending, _STEP)
        if len(out) > limit:
            raise body_too_large(limit, coding=coding)
        pending = inflater.unconsumed_tail
    # What zlib still holds once every input byte is in: at most its window.
    out += inflater.flush()
    if len(out) > limit:
        raise body_too_large(limit, coding=coding)
    if not inflater.eof:
        raise ProtocolError(f"the {coding} body ends before its compressed data does")
    return inflater.unused_data


def compressed(reply: Reply, accept_encoding: str) -> Reply:
    """``reply`` gzipped when it is large and ``accept_encoding`` takes gzip; else as it is."""
    if len(reply.body) < COMPRESS_FROM or not _accepts_gzip(accept_encoding):
        return reply
    body = zlib.compress(reply.body, _GZIP_LEVEL, wbits=_GZIP)
    return reply._replace(body=body, headers=[*reply.headers, *_ENCODED_HEADERS])


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether gzip's quality in ``accept_encoding`` is above 0: its own, else ``*``'s."""
    qualities: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, parameters = item.partition(";")
        name = coding.strip().lower()
        value = parameters.strip().lower()
        if not value:
            quality = 1.0
        else:
            try:
                quality = float(value.removeprefix("q=")) if value.startswith("q=") else 0.0
            except ValueError:
                quality = 0.0
        qualities[name] = quality
    for name in ("gzip", "x-gzip", "*"):
        if name in qualities:
            return qualities[name] > 0
    return False
