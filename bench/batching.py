"""The compute-bound model with many concurrent single-row clients: batching on vs off.

Batching off is ``KEEL_BATCHING__MAX_BATCH_SIZE=1``: every request is its own
runtime call. Everything else stays at its default.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import measure
import payloads
from measure import Windows
from models import ModelFiles
from servers import start_keel

Progress = Callable[[str], None]

SETTINGS = {"on": {}, "off": {"KEEL_BATCHING__MAX_BATCH_SIZE": "1"}}


def compare(
    registry: Path, model: ModelFiles, windows: Windows, logs: Path, progress: Progress
) -> dict[str, Any]:
    """Saturation with batching on and off, and a lone request with batching on."""
    body = payloads.records(model.metadata)
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": [], "lone": []}
    for round_ in range(windows.repeats):
        for mode, env in SETTINGS.items():
            server = start_keel(registry, [model.ref], logs / f"batching-{mode}-{round_}.log", env)
            try:
                server.wait_ready()
                runs[mode].append(measure.saturation(server, body, windows))
                if mode == "on":
                    runs["lone"].append(measure.lone(server, body, windows))
            finally:
                server.stop()
            progress(
                f"round {round_ + 1}: {model.ref} batching {mode}: "
                f"{runs[mode][-1]['throughput']:,.0f} req/s"
            )
    result: dict[str, Any] = {kind: measure.summarize(r) for kind, r in runs.items()}
    result["ratio"] = measure.ratio_of_rounds(result["on"], result["off"])
    return result
