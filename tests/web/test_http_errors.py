"""keel.web.http_errors: every error becomes an answer that can be sent."""

from __future__ import annotations

import orjson

from keel.errors import FieldError, InvalidRequest, ProtocolError
from keel.web.http_errors import error_reply


def test_a_lone_surrogate_in_a_message_is_written_as_an_escape() -> None:
    """Python's json lets lone surrogates into what a message quotes; UTF-8 cannot hold them."""
    error = FieldError(None, "\ud800", "unknown_field", "unknown top-level field '\ud800'")
    reply = error_reply(InvalidRequest([error]))
    body = orjson.loads(reply.body)
    assert reply.status == 422
    assert body["details"][0]["field"] == "\\ud800"
    assert "'\\ud800'" in body["error"]


def test_an_ordinary_message_goes_out_as_it_is() -> None:
    reply = error_reply(ProtocolError("input 'x': shape [2] has 3 elements"))
    assert (reply.status, orjson.loads(reply.body)) == (
        400,
        {"error": "input 'x': shape [2] has 3 elements"},
    )
