"""The JSON records API: ``{"instances": [{feature: value}, ...]}`` validated by the signature."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import FieldError, InvalidRequest, ProtocolError
from keel.serving.context import VERSION_HEADER, deadline_of, state_of, target_version
from keel.serving.request_body import read_body
from keel.signature import to_arrays


async def predict(request: Request) -> Response:
    """Validate records with the signature, run them through the batcher, one answer per record."""
    state = state_of(request)
    version = target_version(request, state)
    batcher = version.require_batcher()
    deadline = deadline_of(request, state)
    body = await read_body(request, state.settings.server.max_body_bytes)
    instances, request_id = _instances(body)
    arrays = to_arrays(instances, version.metadata.signature)
    outputs = await batcher.submit(arrays, deadline)
    declared = [o.name for o in version.metadata.signature.outputs]
    response: dict[str, Any] = {
        "model_name": version.name,
        "model_version": version.label,
        "predictions": _rows({name: outputs[name] for name in declared}),
    }
    if request_id is not None:
        response["id"] = request_id
    return Response(
        orjson.dumps(response),
        headers={VERSION_HEADER: version.label},
        media_type="application/json",
    )


def _instances(body: bytes) -> tuple[list[Any], str | None]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        payload = _lenient_json(body, exc)
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidRequest(
            [FieldError(None, "instances", "required", 'the body must be {"instances": [records]}')]
        )
    unknown = sorted(set(payload) - {"instances", "id"})
    if unknown:
        raise InvalidRequest(
            [
                FieldError(None, k, "unknown_field", f"unknown top-level field '{k}'")
                for k in unknown
            ]
        )
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidRequest(
            [
                FieldError(
                    None,
                    "instances",
                    "not_a_record",
                    "instances must be a non-empty list of records",
                )
            ]
        )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequest([FieldError(None, "id", "type", "id must be a string")])
    return instances, request_id


def _lenient_json(body: bytes, error: orjson.JSONDecodeError) -> Any:
    """Parse the NaN and Infinity literals strict JSON forbids, so the signature names the field.

    Python's json writes them by default, so clients do send them; refusing the
    whole body would hide which feature was NaN. Only reached when orjson has
    already refused the body, so the hot path keeps orjson's speed.
    """
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ProtocolError(f"the body is not valid JSON: {error}") from None


def _rows(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    names = list(outputs)
    columns = [outputs[name].tolist() for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def records_routes() -> list[Route]:
    return [
        Route("/v1/models/{name}/predict", predict, methods=["POST"]),
        Route("/v1/models/{name}/versions/{version}/predict", predict, methods=["POST"]),
    ]
