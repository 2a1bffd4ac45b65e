"""Open Inference Protocol (KServe v2) REST: health, metadata and inference."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import keel
from keel.errors import NotReady, ProtocolError
from keel.serving.context import (
    VERSION_HEADER,
    ServerState,
    deadline_of,
    state_of,
    target_version,
)
from keel.serving.protocols import (
    InferRequest,
    datatype_of,
    encode_infer_response,
    parse_infer_request,
)
from keel.serving.request_body import read_body
from keel.serving.served_version import ServedVersion

JSON = "application/json"
BINARY_HEADER = "inference-header-content-length"
EXTENSIONS = ["binary_tensor_data", "model_repository"]


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=JSON)


async def live(request: Request) -> Response:
    """Liveness: the process answers. Says nothing about models."""
    return _json({"live": True})


async def ready(request: Request) -> Response:
    """Readiness: every served model's default version is loaded, verified and warm."""
    state = state_of(request)
    is_ready = state.manager.ready and not state.shutting_down
    return _json({"ready": is_ready}, status=200 if is_ready else 503)


async def server_metadata(request: Request) -> Response:
    return _json({"name": "keel", "version": keel.__version__, "extensions": EXTENSIONS})


async def model_ready(request: Request) -> Response:
    state = state_of(request)
    version = target_version(request, state)
    is_ready = version.ready and not state.shutting_down
    body = {"name": version.name, "version": version.label, "ready": is_ready}
    return _json(body, status=200 if is_ready else 503, headers={VERSION_HEADER: version.label})


async def model_metadata(request: Request) -> Response:
    state = state_of(request)
    version = target_version(request, state)
    return _json(metadata_of(version, state), headers={VERSION_HEADER: version.label})


def metadata_of(version: ServedVersion, state: ServerState) -> dict[str, Any]:
    """Model metadata as the protocol defines it, plus keel's own state under ``keel``."""
    routes = state.manager.routes[version.name]
    meta = version.metadata
    runtime = version.loaded.runtime if version.loaded else None
    return {
        "name": version.name,
        "versions": sorted(routes.versions),
        "platform": "onnxruntime_onnx" if meta.artifact.format == "onnx" else "keel_safetensors",
        "inputs": [_tensor(s.name, s.dtype, s.shape) for s in runtime.inputs] if runtime else [],
        "outputs": [_tensor(s.name, s.dtype, s.shape) for s in runtime.outputs] if runtime else [],
        "keel": {
            "version": version.label,
            "registry_version": meta.version,
            "aliases": sorted(version.aliases),
            "state": version.state.value,
            "failure": version.failure,
            "time_to_ready_s": version.timings.total_s if version.timings else None,
            "git_sha": meta.source.git_sha,
            "created_at": meta.created_at.isoformat(),
            "batching": _batching_stats(version),
        },
    }


def _batching_stats(version: ServedVersion) -> dict[str, int | bool] | None:
    batcher = version.batcher
    if batcher is None:
        return None
    return {
        "batches_run": batcher.batches_run,
        "rows_run": batcher.rows_run,
        "requests_shed": batcher.requests_shed,
        "queued_rows": batcher.queued_rows,
        "batches_in_flight": batcher.in_flight,
        "runs_on_event_loop": batcher.inline,
    }


def _tensor(name: str, dtype: str, shape: tuple[int | None, ...]) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype_of(np.dtype(dtype)),
        "shape": [-1 if d is None else d for d in shape],
    }


async def infer(request: Request) -> Response:
    """Run one inference request (JSON or binary tensor data) through the model's batcher."""
    state = state_of(request)
    version = target_version(request, state)
    batcher = version.require_batcher()
    deadline = deadline_of(request, state)
    body = await read_body(request, state.settings.server.max_body_bytes)
    parsed = parse_infer_request(body, _json_length(request))
    inputs = {tensor.name: tensor.data for tensor in parsed.inputs}
    contract = version.contract
    if contract is None:
        raise NotReady(f"{version.name} version {version.label} is not ready")
    contract.check(inputs)
    outputs = await batcher.submit(inputs, deadline)
    selected, binary = _select_outputs(parsed, outputs)
    payload, json_length = encode_infer_response(
        model_name=version.name,
        model_version=version.label,
        request_id=parsed.id,
        outputs=selected,
        binary=binary,
    )
    headers = {VERSION_HEADER: version.label}
    if json_length is None:
        return Response(payload, headers=headers, media_type=JSON)
    headers["Inference-Header-Content-Length"] = str(json_length)
    return Response(payload, headers=headers, media_type="application/octet-stream")


def _json_length(request: Request) -> int | None:
    raw = request.headers.get(BINARY_HEADER)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ProtocolError(f"Inference-Header-Content-Length {raw!r} is not a number") from None


def _select_outputs(
    parsed: InferRequest, outputs: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
    """The outputs the client asked for (all when it names none), and which go back binary."""
    names = [o.name for o in parsed.outputs] if parsed.outputs else list(outputs)
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise ProtocolError(f"unknown output(s) {unknown} (the model has {sorted(outputs)})")
    return {n: outputs[n] for n in names}, {n: parsed.wants_binary(n) for n in names}


def v2_routes() -> list[Route]:
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    return [
        Route(f"{model}/infer", infer, methods=["POST"]),
        Route(f"{versioned}/infer", infer, methods=["POST"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route(f"{model}/ready", model_ready, methods=["GET"]),
        Route(f"{versioned}/ready", model_ready, methods=["GET"]),
    ]
