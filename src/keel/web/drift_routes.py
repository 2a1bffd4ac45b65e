"""``GET /v2/models/{name}[/versions/{v}]/drift``: a version's drift window, judged now.

A keel extension beside the protocol's model paths; ``keel drift report`` reads it.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import NotMonitored, NotReady
from keel.serving.calls import VERSION_HEADER
from keel.web.context import state_of, target_version
from keel.web.worker_figures import server_drift


async def drift(request: Request) -> Response:
    """Per-feature and per-prediction drift, null rates and collapse of the window."""
    state = state_of(request)
    version = target_version(request, state)
    if not version.ready:
        raise NotReady(f"{version.name} version {version.label} is {version.state.value}")
    if version.monitor is None:
        raise NotMonitored(
            f"{version.name} version {version.label} was published without reference "
            "statistics, so its traffic has nothing to be compared with"
        )
    if state.peers is None:
        snapshot = version.monitor.snapshot()
    else:
        snapshot = server_drift(version, await state.peers.states(("drift",)))
    return Response(
        orjson.dumps(snapshot.model_dump(mode="json")),
        headers={VERSION_HEADER: version.label},
        media_type="application/json",
    )


def drift_routes() -> list[Route]:
    return [
        Route("/v2/models/{name}/drift", drift, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/drift", drift, methods=["GET"]),
    ]
