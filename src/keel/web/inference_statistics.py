"""One version's inference statistics in the shape of the protocol's statistics extension.

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

from keel.serving.served_version import ServedVersion


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


def add_statistics(total: dict[str, Any], other: dict[str, Any]) -> None:
    """Add another worker's statistics of the same version into ``total``."""
    total["last_inference"] = max(total["last_inference"], other["last_inference"])
    total["inference_count"] += other["inference_count"]
    total["execution_count"] += other["execution_count"]
    for name, duration in total["inference_stats"].items():
        duration["count"] += other["inference_stats"][name]["count"]
        duration["ns"] += other["inference_stats"][name]["ns"]
