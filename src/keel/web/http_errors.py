"""The one place where keel's errors become HTTP status codes and error bodies.

Bodies follow the Open Inference Protocol's error shape, ``{"error": message}``,
with the per-field violations added under ``details`` for validation errors.
No response ever carries a stack trace or a file system path: keel's messages are
written for the operator's terminal and log, where a path helps, so the answer keeps
only a path's last part (``model.onnx is a pickle``) and the log keeps the whole.
"""

from __future__ import annotations

import logging
import math
import re

import orjson
from starlette.responses import Response

from keel import errors
from keel.serving.calls import Reply

log = logging.getLogger("keel.web")

STATUS: tuple[tuple[type[errors.KeelError], int], ...] = (
    (errors.InvalidRequest, 422),
    (errors.UnsupportedEncoding, 415),
    (errors.ProtocolError, 400),
    (errors.InvalidName, 400),
    (errors.AmbiguousVersion, 400),
    (errors.Unauthorized, 401),
    (errors.ModelNotFound, 404),
    (errors.NotMonitored, 404),
    (errors.PayloadTooLarge, 413),
    (errors.Overloaded, 503),
    (errors.NotReady, 503),
    (errors.DeadlineExceeded, 504),
)


# An absolute path, or a file:// URL; not the path part of any other URL (s3://b/k,
# http://host/p), nor a version like sha/timestamp.
_ABSOLUTE_PATH = re.compile(r"(?:\bfile://|(?<![\w.~:/\\-]))/(?:[^\s/'\"`]+/)*([^\s/'\"`]+)")


def without_paths(message: str) -> str:
    """``message`` with every absolute file system path cut to its last part."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


def status_of(exc: errors.KeelError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


# The answer to a failure of keel's own: nothing about it reaches the client.
INTERNAL_ERROR = Reply(500, b'{"error":"internal error; the server logged the details"}')


def error_reply(exc: Exception) -> Reply:
    """The HTTP answer to an exception raised while handling a request."""
    if not isinstance(exc, errors.KeelError):
        log.exception("unexpected error while handling a request")
        return INTERNAL_ERROR
    status = status_of(exc)
    body: dict[str, object] = {"error": without_paths(str(exc))}
    headers: list[tuple[bytes, bytes]] = []
    if isinstance(exc, errors.InvalidRequest):
        body["details"] = [
            {"index": e.index, "field": e.field, "rule": e.rule, "message": e.message}
            for e in exc.errors
        ]
    if isinstance(exc, errors.Overloaded):
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()))
    if isinstance(exc, errors.Unauthorized):
        headers.append((b"www-authenticate", b"Bearer"))
    if status == 500:
        # A runtime failure is the server's problem, not the client's: log it whole.
        log.error("request failed: %s", exc)
        body = {"error": "the model failed to run this request; the server logged the details"}
    return _json(status, body, headers)


def error_response(exc: Exception) -> Response:
    """``error_reply`` as a Starlette response, for the routes Starlette serves."""
    reply = error_reply(exc)
    return Response(
        reply.body,
        status_code=reply.status,
        headers={name.decode(): value.decode() for name, value in reply.headers},
        media_type=reply.content_type.decode(),
    )


def _json(
    status: int, body: dict[str, object], headers: list[tuple[bytes, bytes]] | None = None
) -> Reply:
    try:
        encoded = orjson.dumps(body)
    except TypeError:
        # A message may quote what the client sent, and Python's json (which the records
        # API falls back on for NaN) lets lone surrogates through; UTF-8 has no spelling
        # for them. The refusal must still go out.
        encoded = orjson.dumps(_printable(body))
    return Reply(status, encoded, headers=headers or [])


def _printable(value: object) -> object:
    """``value`` with every string made encodable, lone surrogates written as escapes."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {str(_printable(k)): _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value
