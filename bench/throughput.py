"""Saturation, lone-request latency and open-loop latency on the small model: naive vs keel.

Each round starts every server afresh and measures them one after the other,
so slow drift on the shared machine spreads over all of them instead of
landing on one; the medians of the rounds are reported. Open-loop runs come
after, at half of each server's own median saturation rate.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import measure
import payloads
from measure import Windows
from models import ModelFiles
from monitor import rss_of
from payloads import Payload
from servers import (
    ServerProcess,
    start_fixed_response,
    start_keel,
    start_naive,
    start_stack_floor,
)

Progress = Callable[[str], None]
# Servers measured for reference only: no open-loop run.
WITHOUT_OPEN_LOOP = frozenset(
    {"naive-def", "stack-bare", "stack-starlette", "stack-keel", "keel-nodrift"}
)


def ceiling(windows: Windows, logs: Path, progress: Progress) -> dict[str, Any]:
    """The load generator against a server that does nothing: the most it can measure."""
    server = start_fixed_response(logs / "fixed-response.log")
    body = Payload("fixed", "/v1/models/x/predict", b'{"instances":[{"x":1.0}]}', payloads.JSON)
    try:
        server.wait_ready()
        sat = [measure.saturation(server, body, windows) for _ in range(windows.repeats)]
        alone = [measure.lone(server, body, windows) for _ in range(windows.repeats)]
    finally:
        server.stop()
    result = {"saturation": measure.summarize(sat), "lone": measure.summarize(alone)}
    progress(
        f"load generator ceiling: {result['saturation']['throughput']:,.0f} req/s, "
        f"lone p50 {result['lone']['latency_us'].get('p50')} µs"
    )
    return result


def compare(
    registry: Path,
    model: ModelFiles,
    windows: Windows,
    logs: Path,
    progress: Progress,
    naive_sync: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per server and protocol: saturation, lone and open-loop summaries, and RSS when ready.

    Beside the naive baseline and keel, the HTTP stacks' own floors (uvicorn with a
    bare ASGI app, with a Starlette route, and keel's own HTTP layer) answer the
    same records request with fixed bytes: saturation and lone latency only.
    """
    records = payloads.records(model.metadata)
    targets: list[tuple[str, Callable[[Path], ServerProcess], list[Payload]]] = [
        ("stack-bare", lambda log: start_stack_floor("bare", log), [records]),
        ("stack-starlette", lambda log: start_stack_floor("starlette", log), [records]),
        ("stack-keel", lambda log: start_stack_floor("keel", log), [records]),
        ("naive", lambda log: start_naive(model.path, _features(model), log), [records]),
        (
            "keel",
            lambda log: start_keel(registry, [model.ref], log),
            [records, payloads.v2_json(model.metadata), payloads.v2_binary(model.metadata)],
        ),
        # keel with its drift windows off: what monitoring costs at saturation.
        (
            "keel-nodrift",
            lambda log: start_keel(registry, [model.ref], log, {"KEEL_DRIFT__ENABLED": "false"}),
            [records],
        ),
    ]
    if naive_sync:
        targets.insert(
            1,
            (
                "naive-def",
                lambda log: start_naive(model.path, _features(model), log, sync_handler=True),
                [records],
            ),
        )
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    ready_rss: dict[str, list[int]] = {}
    for round_ in range(windows.repeats):
        for name, start, bodies in targets:
            server = start(logs / f"{name}-round{round_}.log")
            try:
                server.wait_ready()
                ready_rss.setdefault(name, []).append(rss_of(server.pid))
                for body in bodies:
                    key = f"{name} {body.protocol}"
                    slot = runs.setdefault(key, {"saturation": [], "lone": [], "open": []})
                    slot["saturation"].append(measure.saturation(server, body, windows))
                    slot["lone"].append(measure.lone(server, body, windows))
                    progress(
                        f"round {round_ + 1}: {key}: {slot['saturation'][-1]['throughput']:,.0f} "
                        f"req/s, lone p50 {slot['lone'][-1]['latency_us'].get('p50')} µs"
                    )
            finally:
                server.stop()
    rates = {
        key: 0.5 * statistics.median(r["throughput"] for r in slot["saturation"])
        for key, slot in runs.items()
    }
    for round_ in range(windows.repeats):
        for name, start, bodies in targets:
            if name in WITHOUT_OPEN_LOOP:
                continue
            server = start(logs / f"{name}-open-round{round_}.log")
            try:
                server.wait_ready()
                for body in bodies:
                    key = f"{name} {body.protocol}"
                    run = measure.open_loop(server, body, windows, rates[key])
                    runs[key]["open"].append(run)
                    progress(
                        f"round {round_ + 1}: {key} open loop at {rates[key]:,.0f} req/s: "
                        f"p99 {run['latency_us'].get('p99')} µs"
                    )
            finally:
                server.stop()
    return {
        key: {
            "ready_rss": statistics.median(ready_rss[key.split(" ")[0]]),
            "open_rate": None if key.split(" ")[0] in WITHOUT_OPEN_LOOP else round(rates[key], 1),
            **{kind: measure.summarize(r) for kind, r in slot.items() if r},
        }
        for key, slot in runs.items()
    }


def _features(model: ModelFiles) -> list[str]:
    return list(model.metadata.signature.feature_names)
