"""``GET /metrics`` for Prometheus, on the serving port."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.monitoring.exposition import metrics_text, wants_openmetrics
from keel.web.context import state_of
from keel.web.worker_figures import server_metrics


async def metrics(request: Request) -> Response:
    """Every keel metric of the whole server: in the Prometheus text format, or OpenMetrics
    with the latency exemplars when traces are on and the scraper asks for it."""
    state = state_of(request)
    openmetrics = wants_openmetrics(request.headers.get("accept"))
    if state.peers is None:
        body, content_type = metrics_text(state.metrics, openmetrics)
    else:
        body, content_type = await server_metrics(state, state.peers, openmetrics)
    return Response(body, headers={"content-type": content_type})


def metrics_routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
