"""Open Inference Protocol (KServe v2) REST: health and metadata; infer is in the engine."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import keel
from keel.serving.calls import VERSION_HEADER
from keel.serving.protocols import datatype_of
from keel.serving.served_version import ServedVersion
from keel.web.context import ServerState, state_of, target_version
from keel.web.http_errors import without_paths

JSON = "application/json"
EXTENSIONS = ["binary_tensor_data", "model_configuration", "model_repository", "statistics"]


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, headers=headers, media_type=JSON)


async def live(request: Request) -> Response:
    """Liveness: the process answers. Says nothing about models."""
    return _json({"live": True})


async def ready(request: Request) -> Response:
    """Readiness: every served model's default version is loaded, verified and warm."""
    state = state_of(request)
    is_ready = state.ready
    body: dict[str, Any] = {"ready": is_ready}
    if state.peers is not None:
        body["workers"] = state.peers.details()
    return _json(body, status=200 if is_ready else 503)


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
    metadata = metadata_of(version, state)
    batching = metadata["keel"]["batching"]
    if state.peers is not None and batching is not None:
        # Each worker batches what it answered: the server's batching is their sum.
        key = f"{version.name}/{version.label}"
        for figures in await state.peers.states(("batching",)):
            other = figures["batching"].get(key)
            if other is not None:
                add_batching(batching, other)
    return _json(metadata, headers={VERSION_HEADER: version.label})


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
            # The log keeps the full reason; an answer names no path on the server.
            "failure": None if version.failure is None else without_paths(version.failure),
            "time_to_ready_s": version.timings.total_s if version.timings else None,
            "git_sha": meta.source.git_sha,
            "created_at": meta.created_at.isoformat(),
            "batching": batching_stats(version),
        },
    }


def add_batching(total: dict[str, int | bool], other: dict[str, int | bool]) -> None:
    """Another worker's batching figures of the same version, added into ``total``."""
    for key, value in other.items():
        if isinstance(value, bool):
            total[key] = bool(total[key]) and value
        else:
            total[key] = int(total[key]) + value


def batching_stats(version: ServedVersion) -> dict[str, int | bool] | None:
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


def v2_routes() -> list[Route]:
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route(f"{model}/ready", model_ready, methods=["GET"]),
        Route(f"{versioned}/ready", model_ready, methods=["GET"]),
    ]
