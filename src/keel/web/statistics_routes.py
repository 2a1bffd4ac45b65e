"""``GET /v2/models[/{name}[/versions/{v}]]/stats``: the statistics extension tritonclient reads.

Every figure comes from what ``/metrics`` exports for the version, so the two
agree: ``success`` and ``fail`` count requests answered 200 and otherwise
(``keel_requests_total`` by status) with their summed latency; ``queue`` is
``keel_queue_duration_seconds``; ``compute_infer`` counts each request once per
model run that served it, with that run's time, as Triton does; ``compute_input``
is a successful request's time from arrival to checked inputs (body read,
decoded, checked against the signature) and ``compute_output`` from the model's
outputs to the encoded answer. ``inference_count`` is rows the model ran,
``execution_count`` model runs (``keel_batch_size``). Durations are integer nanoseconds.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.serving.served_version import ServedVersion
from keel.web.context import state_of


async def statistics(request: Request) -> Response:
    state = state_of(request)
    name = request.path_params.get("name")
    selector = request.path_params.get("version")
    if name is None:
        versions = state.manager.versions()
    elif selector is not None:
        versions = [state.plane.find(name, selector, {})]
    else:
        state.manager.find(name, None)  # ModelNotFound, naming the served models
        versions = list(state.manager.routes[name].versions.values())
    body = {"model_stats": [statistics_of(version) for version in versions]}
    return Response(orjson.dumps(body), media_type="application/json")


def statistics_of(version: ServedVersion) -> dict[str, Any]:
    """One version's statistics in the extension's shape."""
    metrics = version.metrics
    succeeded = sum(count for (_, status), count in metrics.requests.items() if status == 200)
    failed = sum(count for (_, status), count in metrics.requests.items() if status != 200)
    last = metrics.last_run_at
    return {
        "name": version.name,
        "version": version.label,
        "last_inference": 0 if last is None else round(last * 1000),
        # keel_batch_size: the client's rows and runs, the server's own warm-up left out.
        "inference_count": round(metrics.batch_size.sum),
        "execution_count": sum(metrics.batch_size.counts),
        "inference_stats": {
            "success": _duration(succeeded, metrics.success_s),
            "fail": _duration(failed, metrics.fail_s),
            "queue": _duration(sum(metrics.queue_wait.counts), metrics.queue_wait.sum),
            "compute_input": _duration(metrics.computed, metrics.compute_input_s),
            "compute_infer": _duration(metrics.compute_infer_requests, metrics.compute_infer_s),
            "compute_output": _duration(metrics.computed, metrics.compute_output_s),
        },
        "batch_stats": [],
    }


def _duration(count: int, seconds: float) -> dict[str, int]:
    return {"count": count, "ns": round(seconds * 1e9)}


def statistics_routes() -> list[Route]:
    # Before the model metadata routes: /v2/models/stats is not a model named "stats".
    return [
        Route("/v2/models/stats", statistics, methods=["GET"]),
        Route("/v2/models/{name}/stats", statistics, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/stats", statistics, methods=["GET"]),
    ]
