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


# What the client is told of a failure of keel's own, and of the model's: nothing more.
INTERNAL_MESSAGE = "internal error; the server logged the details"
MODEL_FAILED_MESSAGE = "the model failed to run this request; the server logged the details"
INTERNAL_ERROR = Reply(500, orjson.dumps({"error": INTERNAL_MESSAGE}))


def public_message(exc: Exception) -> str:
    """What a client is told of ``exc``, on any protocol; a failure that is the server's is
    logged whole here and answered without its cause."""
    if not isinstance(exc, errors.KeelError):
        log.error("unexpected error while handling a request", exc_info=exc)
        return INTERNAL_MESSAGE
    if status_of(exc) == 500:
        log.error("request failed: %s", exc)
        return MODEL_FAILED_MESSAGE
    return without_paths(str(exc))


def error_reply(exc: Exception) -> Reply:
    """The HTTP answer to an exception raised while handling a request."""
    if not isinstance(exc, errors.KeelError):
        public_message(exc)  # logs it
        return INTERNAL_ERROR
    status = status_of(exc)
    body: dict[str, object] = {"error": public_message(exc)}
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
