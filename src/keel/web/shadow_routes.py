"""``GET /v2/models/{name}/shadow``: the model's shadow candidate, its counts and live agreement.

A keel extension beside the protocol's model paths. ``keel shadow report`` reads
the prediction log instead, which covers every replica and survives restarts.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.errors import ModelNotFound
from keel.logstore.opening import redacted_url
from keel.shadow.mirror import ShadowMirror
from keel.web.context import state_of


async def shadow(request: Request) -> Response:
    """What the candidate is, whether it is ready, and what became of the mirrored requests.

    With several workers, each mirrors the requests it answered: the counts are
    every worker's added up, the candidate ready only if it is in every worker.
    """
    state = state_of(request)
    name = request.path_params["name"]
    state.manager.find(name)
    mirror = state.shadowing.mirrors.get(name)
    if mirror is None:
        raise ModelNotFound(f"model '{name}' has no shadow candidate running")
    body = shadow_status(mirror)
    if state.peers is not None:
        others = [figures["shadow"].get(name) for figures in await state.peers.states(("shadow",))]
        body = _merged([body, *(other for other in others if other is not None)])
    return Response(orjson.dumps(body), media_type="application/json")


def shadow_status(mirror: ShadowMirror) -> dict[str, Any]:
    """One worker's shadow of one model, as the route answers it."""
    statuses: Counter[str] = Counter()
    for (_, _, status), count in mirror.counts.items():
        statuses[status.value] += count
    prediction_log = mirror.log
    agreement = mirror.live.agreement()
    return {
        "model": mirror.model,
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
        "agreement": agreement,
        "agreement_rows": mirror.live.recent_rows,
        # What the mean differences divide, so that several workers' add up exactly.
        "difference_sums": {
            name: [total, count] for name, (total, count) in mirror.live.difference_sums().items()
        },
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


def _merged(bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Every worker's shadow of one model as one: counts added, the candidate ready only if
    it is in every worker, agreement and differences over every worker's recent rows."""
    total = bodies[0]
    candidate, log = total["candidate"], total["log"]
    for other in bodies[1:]:
        theirs, their_log = other["candidate"], other["log"]
        candidate["ready"] = candidate["ready"] and theirs["ready"]
        for key in ("paused_s", "timeouts_in_a_row"):
            candidate[key] = max(candidate[key], theirs[key])
        total["queued"] += other["queued"]
        total["requests"] = dict(Counter(total["requests"]) + Counter(other["requests"]))
        for key in ("written", "pending", "pending_limit"):
            log[key] += their_log[key]
        log["dropped"] = dict(Counter(log["dropped"]) + Counter(their_log["dropped"]))
        log["healthy"] = log["healthy"] and their_log["healthy"]
    # Each worker's agreement is over its own recent rows: weighted by how many they are.
    judged = [(b["agreement"], b["agreement_rows"]) for b in bodies if b["agreement_rows"]]
    total["agreement_rows"] = sum(rows for _, rows in judged)
    total["agreement"] = (
        statistics.fmean([a for a, _ in judged], [rows for _, rows in judged]) if judged else None
    )
    # The mean differences: every worker's sums and counts added, then divided.
    sums: dict[str, list[float]] = {}
    for body in bodies:
        for output, (part, count) in body["difference_sums"].items():
            kept = sums.setdefault(output, [0.0, 0.0])
            kept[0] += part
            kept[1] += count
    total["difference_sums"] = sums
    total["mean_abs_difference"] = {
        output: part / count for output, (part, count) in sorted(sums.items()) if count
    }
    return total


def shadow_routes() -> list[Route]:
    return [Route("/v2/models/{name}/shadow", shadow, methods=["GET"])]
