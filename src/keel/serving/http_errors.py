"""The one place where keel's errors become HTTP status codes and error bodies.

Bodies follow the Open Inference Protocol's error shape, ``{"error": message}``,
with the per-field violations added under ``details`` for validation errors.
No response ever carries a stack trace or a file system path.
"""

from __future__ import annotations

import logging
import math

import orjson
from starlette.responses import Response

from keel import errors

log = logging.getLogger("keel.serving")

STATUS: tuple[tuple[type[errors.KeelError], int], ...] = (
    (errors.InvalidRequest, 422),
    (errors.ProtocolError, 400),
    (errors.InvalidName, 400),
    (errors.AmbiguousVersion, 400),
    (errors.Unauthorized, 401),
    (errors.ModelNotFound, 404),
    (errors.PayloadTooLarge, 413),
    (errors.Overloaded, 503),
    (errors.NotReady, 503),
    (errors.DeadlineExceeded, 504),
)
JSON = "application/json"


def status_of(exc: errors.KeelError) -> int:
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def error_response(exc: Exception) -> Response:
    """The HTTP answer to an exception raised while handling a request."""
    if not isinstance(exc, errors.KeelError):
        log.exception("unexpected error while handling a request")
        return _json(500, {"error": "internal error; the server logged the details"})
    status = status_of(exc)
    body: dict[str, object] = {"error": str(exc)}
    headers: dict[str, str] = {}
    if isinstance(exc, errors.InvalidRequest):
        body["details"] = [
            {"index": e.index, "field": e.field, "rule": e.rule, "message": e.message}
            for e in exc.errors
        ]
    if isinstance(exc, errors.Overloaded):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if status == 500:
        # A runtime failure is the server's problem, not the client's: log it whole.
        log.error("request failed: %s", exc)
        body = {"error": "the model failed to run this request; the server logged the details"}
    return _json(status, body, headers)


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=JSON)
