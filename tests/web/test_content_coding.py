"""Content codings undone under the body limit, and which answers are gzipped."""

from __future__ import annotations

import gzip
import zlib

import pytest

from keel.errors import PayloadTooLarge, ProtocolError, UnsupportedEncoding
from keel.serving.calls import Reply
from keel.web.content_coding import COMPRESS_FROM, compressed, decoded_body

BODY = b'{"instances": [{"mean_radius": 14.2}]}' * 20


def _raw_deflate(data: bytes) -> bytes:
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return deflater.compress(data) + deflater.flush()


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("GZIP", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("identity", BODY),
        ("gzip, identity", gzip.compress(BODY)),
        ("deflate, gzip", gzip.compress(zlib.compress(BODY))),
        ("gzip", gzip.compress(BODY[:100]) + gzip.compress(BODY[100:])),  # two members
        ("deflate", _raw_deflate(BODY)),  # without zlib's wrapper, as some clients send it
    ],
)
def test_each_coding_is_undone_last_applied_first(encoding: str, encoded: bytes) -> None:
    assert decoded_body(encoded, encoding, len(BODY)) == BODY


def test_the_limit_is_on_the_inflated_size_to_the_byte() -> None:
    assert decoded_body(gzip.compress(BODY), "gzip", len(BODY)) == BODY
    with pytest.raises(PayloadTooLarge, match=f"limit of {len(BODY) - 1} bytes"):
        decoded_body(gzip.compress(BODY), "gzip", len(BODY) - 1)


def test_an_empty_body_is_empty_in_every_coding() -> None:
    assert decoded_body(b"", "gzip", 10) == b""


def test_every_coding_is_checked_before_any_is_undone() -> None:
    # Not "the gzip data is broken": the unknown coding is named first.
    with pytest.raises(UnsupportedEncoding, match="'br'"):
        decoded_body(b"not gzip", "br, gzip", 1 << 20)
    with pytest.raises(UnsupportedEncoding, match="3 content codings"):
        decoded_body(gzip.compress(gzip.compress(gzip.compress(BODY))), "gzip, gzip, gzip", 1 << 20)


def test_an_unknown_coding_is_a_protocol_error_of_its_own() -> None:
    with pytest.raises(UnsupportedEncoding, match="'zstd'") as refused:
        decoded_body(BODY, "zstd", 1 << 20)
    assert isinstance(refused.value, ProtocolError)


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("br, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("gzip;q=nonsense", False),
        ("*;q=0.5, gzip;q=0", False),  # gzip's own quality wins over the wildcard's
        ("*;q=0, gzip", True),
        ("GZIP;Q=0.001", True),
        ("identity", False),
        ("", False),
    ],
)
def test_a_large_answer_is_gzipped_when_the_client_takes_gzip(accept: str, gzipped: bool) -> None:
    reply = Reply(200, b"x" * COMPRESS_FROM, headers=[(b"x-keel-model-version", b"v1")])
    answer = compressed(reply, accept)
    assert (answer.body != reply.body) is gzipped
    if gzipped:
        assert gzip.decompress(answer.body) == reply.body
        assert (b"content-encoding", b"gzip") in answer.headers
        assert (b"x-keel-model-version", b"v1") in answer.headers


def test_a_small_answer_is_never_gzipped() -> None:
    reply = Reply(200, b"x" * (COMPRESS_FROM - 1))
    assert compressed(reply, "gzip") is reply
