"""The OpenAPI document of the running server, built from the served models' signatures."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import keel
from keel.signature import COMPUTED_AT_FIELD, Signature, freshness_of
from keel.web.context import state_of

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "details": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": ["integer", "null"]},
                    "field": {"type": "string"},
                    "rule": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
    },
}
# Where the protocol lets a key be absent, keel reads a JSON null the same way, so the
# schemas allow it: a schema stricter than the server would call valid requests invalid.
TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
                "BYTES",
            ],
        },
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": {"type": ["object", "null"]},
        "data": {"type": ["array", "null"]},
    },
}
REQUESTED_OUTPUT = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "parameters": {"type": ["object", "null"]},
    },
}
ERRORS = {
    str(status): {"description": text, "content": {"application/json": {"schema": ERROR}}}
    for status, text in (
        (400, "malformed request"),
        (404, "unknown model or version"),
        (413, "body too large (inflated, when it came compressed)"),
        (415, "a Content-Encoding other than gzip or deflate"),
        (422, "input breaks the signature"),
        (503, "not ready, or overloaded (see Retry-After)"),
        (504, "deadline exceeded"),
    )
}
VERSION_PARAMETER = {
    "name": "X-Keel-Model-Version",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "Alias or version to answer with (default production).",
}
DEADLINE_PARAMETER = {
    "name": "X-Keel-Deadline-Ms",
    "in": "header",
    "required": False,
    "schema": {"type": "number", "exclusiveMinimum": 0},
    "description": "Answer 504 if no prediction is ready within this many milliseconds.",
}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"200": {"description": description, "content": content}}


def _get(
    summary: str, parameters: list[dict[str, Any]] | None, ok: str, errors: dict[str, Any]
) -> dict[str, Any]:
    """A GET operation: its summary, parameters (if any) and responses."""
    operation: dict[str, Any] = {"summary": summary}
    if parameters is not None:
        operation["parameters"] = parameters
    operation["responses"] = {**_ok(ok), **errors}
    return {"get": operation}


def _path_parameters(versioned: bool) -> list[dict[str, Any]]:
    # The model name is written into each path, not templated: every model has its own
    # records schema, so it is no parameter a client could vary.
    if not versioned:
        return []
    return [{"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}]


def build_openapi(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """OpenAPI 3.1 for the protocol endpoints and one records schema per served model."""
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {"summary": "Liveness", "responses": _ok("alive")}},
        "/v2/health/ready": {
            "get": {
                "summary": "Readiness: every model loaded, verified, warm",
                "responses": {**_ok("ready"), "503": ERRORS["503"]},
            }
        },
        "/v2": {"get": {"summary": "Server metadata", "responses": _ok("server metadata")}},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "responses": {"200": {"description": "metrics", "content": {"text/plain": {}}}},
            }
        },
    }
    for name, records_schema in models.items():
        for versioned in (False, True):
            base = f"/v2/models/{name}" + ("/versions/{version}" if versioned else "")
            params = [*_path_parameters(versioned), VERSION_PARAMETER]
            missing = {"404": ERRORS["404"]}
            unready = {**missing, "503": ERRORS["503"]}
            paths[base] = _get(f"Metadata of {name}", params, "model metadata", missing)
            paths[f"{base}/ready"] = _get(f"Is {name} ready", params, "ready", unready)
            paths[f"{base}/config"] = _get(
                f"Configuration of {name}, in Triton's shape",
                params,
                "model configuration",
                unready,
            )
            if not versioned:
                paths[f"{base}/shadow"] = _get(
                    f"{name}'s shadow candidate: counts and live agreement (keel)",
                    None, "shadow state", missing,
                )  # fmt: skip
            paths[f"{base}/drift"] = _get(
                f"Drift, null rates and collapse of {name}'s window (keel)",
                params, "drift snapshot", missing,
            )  # fmt: skip
            paths[f"{base}/infer"] = {
                "post": {
                    "summary": f"Infer with {name} (JSON or binary tensor data)",
                    "parameters": [*params, DEADLINE_PARAMETER],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["inputs"],
                                    "properties": {
                                        "id": {"type": ["string", "null"]},
                                        "parameters": {"type": ["object", "null"]},
                                        "inputs": {"type": "array", "items": TENSOR, "minItems": 1},
                                        "outputs": {
                                            "type": ["array", "null"],
                                            "items": REQUESTED_OUTPUT,
                                        },
                                    },
                                }
                            }
                        },
                    },
                    "responses": {**_ok("inference response"), **ERRORS},
                }
            }
            predict = (
                f"/v1/models/{name}" + ("/versions/{version}" if versioned else "") + "/predict"
            )
            paths[predict] = {
                "post": {
                    "summary": f"Predict with {name} from JSON records",
                    "parameters": [*params, DEADLINE_PARAMETER],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["instances"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "id": {"type": ["string", "null"]},
                                        "instances": {**records_schema, "minItems": 1},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        **_ok(
                            "one prediction per instance",
                            {
                                "type": "object",
                                "properties": {
                                    "model_name": {"type": "string"},
                                    "model_version": {"type": "string"},
                                    "id": {"type": "string"},
                                    "predictions": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                        ),
                        **ERRORS,
                    },
                }
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "keel model server", "version": keel.__version__},
        "paths": paths,
    }


async def openapi(request: Request) -> Response:
    manager = state_of(request).manager
    models = {}
    for name in manager.names():
        version = manager.find(name)
        signature = version.metadata.signature
        models[name] = _with_computed_at(signature.records_json_schema(), signature)
    return Response(orjson.dumps(build_openapi(models)), media_type="application/json")


def _with_computed_at(schema: dict[str, Any], signature: Signature) -> dict[str, Any]:
    """Records may say when features with a ``max_age_s`` were computed."""
    freshness = freshness_of(signature)
    if freshness is None:
        return schema
    times = {"oneOf": [{"type": "number"}, {"type": "string", "format": "date-time"}]}
    computed_at = {
        "type": "object",
        "description": "When each feature was computed: Unix seconds or RFC 3339 with a zone.",
        "properties": dict.fromkeys(freshness.declared, times),
    }
    items = schema["items"]
    properties = {**items.get("properties", {}), COMPUTED_AT_FIELD: computed_at}
    return {**schema, "items": {**items, "properties": properties}}


def openapi_route() -> Route:
    return Route("/openapi.json", openapi, methods=["GET"])
