"""``GET /v2/models[/{name}[/versions/{v}]]/stats``: the statistics extension tritonclient reads.

The figures are ``keel.web.inference_statistics``'s, of the whole server: with
several workers, every worker's added up.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.web.context import ServerState, state_of
from keel.web.inference_statistics import statistics_of
from keel.web.worker_figures import server_statistics


async def statistics(request: Request) -> Response:
    state = state_of(request)
    params = request.path_params
    stats = await statistics_for(state, params.get("name"), params.get("version"))
    return Response(orjson.dumps({"model_stats": stats}), media_type="application/json")


async def statistics_for(
    state: ServerState, name: str | None, selector: str | None
) -> list[dict[str, Any]]:
    """The statistics of every version (of model ``name``; its version ``selector``)."""
    if name is None:
        versions = state.manager.versions()
    elif selector is not None:
        versions = [state.plane.find(name, selector, {})]
    else:
        state.manager.find(name, None)  # ModelNotFound, naming the served models
        versions = list(state.manager.routes[name].versions.values())
    if state.peers is None:
        return [statistics_of(version) for version in versions]
    others = await state.peers.states(("statistics",))
    return [server_statistics(version, others) for version in versions]


def statistics_routes() -> list[Route]:
    # Before the model metadata routes: /v2/models/stats is not a model named "stats".
    return [
        Route("/v2/models/stats", statistics, methods=["GET"]),
        Route("/v2/models/{name}/stats", statistics, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/stats", statistics, methods=["GET"]),
    ]
