"""``GET /metrics`` for Prometheus, on the serving port."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.monitoring.exposition import CONTENT_TYPE, metrics_text
from keel.web.context import state_of


async def metrics(request: Request) -> Response:
    """Every keel metric in the Prometheus text format."""
    body = metrics_text(state_of(request).metrics)
    return Response(body, headers={"content-type": CONTENT_TYPE})


def metrics_routes() -> list[Route]:
    return [Route("/metrics", metrics, methods=["GET"])]
