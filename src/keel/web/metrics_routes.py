"""``GET /metrics`` for Prometheus, on the serving port."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.monitoring.exposition import CONTENT_TYPE, metrics_text
from keel.web.context import state_of
from keel.web.worker_figures import server_metrics


async def metrics(request: Request) -> Response:
    """Every keel metric in the Prometheus text format, of the whole server."""
    state = state_of(request)
    if state.peers is None:
        body = metrics_text(state.metrics)
    else:
        body = await server_metrics(state, state.peers)
    return Response(body, headers={"content-type": CONTENT_TYPE})


def metrics_routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
