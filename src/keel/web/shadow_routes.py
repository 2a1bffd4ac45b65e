"""``GET /v2/models/{name}/shadow``: the model's shadow candidate, its counts and live agreement.

A keel extension beside the protocol's model paths. ``keel shadow report`` reads
the prediction log instead, which covers every replica and survives restarts.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import ModelNotFound
from keel.logstore.opening import redacted_url
from keel.web.context import state_of


async def shadow(request: Request) -> Response:
    """What the candidate is, whether it is ready, and what became of the mirrored requests."""
    state = state_of(request)
    name = request.path_params["name"]
    state.manager.find(name)
    mirror = state.shadowing.mirrors.get(name)
    if mirror is None:
        raise ModelNotFound(f"model '{name}' has no shadow candidate running")
    statuses: Counter[str] = Counter()
    for (_, _, status), count in mirror.counts.items():
        statuses[status.value] += count
    prediction_log = mirror.log
    body: dict[str, Any] = {
        "model": name,
        "candidate": {
            "source": mirror.candidate.source,
            "kind": mirror.candidate.kind,
            "version": mirror.candidate.version,
            "ready": mirror.ready,
            "paused_s": round(mirror.pausing.remaining_s(), 3),
            "timeouts_in_a_row": mirror.pausing.in_a_row,
        },
        "sample_rate": mirror.settings.sample_rate,
        "timeout_ms": mirror.settings.timeout_ms,
        "queued": mirror.queued,
        "requests": dict(statuses),
        "agreement": mirror.live.agreement(),
        "mean_abs_difference": mirror.live.mean_differences(),
        "log": {
            "url": redacted_url(prediction_log.store.url),
            "written": prediction_log.written,
            "dropped": dict(prediction_log.dropped),
            "pending": prediction_log.pending,
            "pending_limit": prediction_log.pending_limit,
            "healthy": prediction_log.healthy,
        },
    }
    return Response(orjson.dumps(body), media_type="application/json")


def shadow_routes() -> list[Route]:
    return [Route("/v2/models/{name}/shadow", shadow, methods=["GET"])]
