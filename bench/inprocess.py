"""The floor: the model called in-process, no HTTP, no JSON, no event loop.

For each model reference, the same ``model.onnx`` keel serves is opened in an
ONNX Runtime session with keel's options (``keel.runtimes.onnx_runtime.
session_options``: one intra-op thread, no spinning) and called back to back
with one row and with a batch of rows, the rows being the model's own golden
inputs. Reported per batch size: µs per call and rows per second, the median
of the repeats; beside the raw ``session.run``, the same call through keel's
``Runtime.predict`` (which checks names, dtypes and shapes first).

Pin it to the core the servers get, so the numbers compare:

    taskset -c 0 python bench/inprocess.py --registry DIR breast-cancer@production --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from keel.loading import load_version
from keel.registry import Registry
from keel.runtimes.onnx_runtime import session_options
from keel.settings import RuntimeSettings
from keel.signature import to_arrays

BATCH_SIZES = (1, 64)


def time_calls(call: Callable[[], object], seconds: float) -> float:
    """Seconds per call of ``call``, timed over about ``seconds`` of back-to-back calls."""
    for _ in range(20):  # warm caches, allocator arenas and branch predictors
        call()
    probe = 20
    started = time.perf_counter()
    for _ in range(probe):
        call()
    estimate = max((time.perf_counter() - started) / probe, 1e-7)
    count = max(20, int(seconds / estimate))
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count


def batch_of(rows: np.ndarray, size: int) -> np.ndarray:
    """``size`` rows cycled from ``rows``, C-contiguous."""
    index = np.arange(size) % len(rows)
    return np.ascontiguousarray(rows[index])


def measure_ref(registry: Registry, ref: str, repeats: int, seconds: float) -> dict[str, Any]:
    """Per batch size, µs per call and rows/s of raw session.run and of keel's predict."""
    settings = RuntimeSettings()
    metadata = registry.resolve(ref)
    loaded = load_version(registry, metadata, settings)
    model_path = loaded.folder / metadata.artifact.path
    session = ort.InferenceSession(
        str(model_path), sess_options=session_options(settings), providers=["CPUExecutionProvider"]
    )
    inputs = to_arrays(metadata.golden.inputs, metadata.signature)
    (input_name,) = inputs
    outputs = [o.name for o in session.get_outputs()]
    result: dict[str, Any] = {
        "ref": ref,
        "model_bytes": model_path.stat().st_size,
        "batches": {},
    }
    for size in BATCH_SIZES:
        x = batch_of(inputs[input_name], size)
        feeds = {input_name: x}

        def run_raw(feeds: dict[str, np.ndarray] = feeds) -> object:
            return session.run(outputs, feeds)

        def run_keel(feeds: dict[str, np.ndarray] = feeds) -> object:
            return loaded.runtime.predict(dict(feeds))

        raw = [time_calls(run_raw, seconds) for _ in range(repeats)]
        keel = [time_calls(run_keel, seconds) for _ in range(repeats)]
        per_call = statistics.median(raw)
        result["batches"][str(size)] = {
            "us_per_call": round(per_call * 1e6, 2),
            "us_per_call_runs": [round(s * 1e6, 2) for s in raw],
            "rows_per_s": round(size / per_call, 1),
            "keel_predict_us_per_call": round(statistics.median(keel) * 1e6, 2),
        }
    loaded.close()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("refs", nargs="+", help="NAME@ALIAS of ONNX models")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5, help="per timed measurement")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    registry = Registry(args.registry)
    results = [measure_ref(registry, ref, args.repeats, args.seconds) for ref in args.refs]
    if args.json:
        print(json.dumps(results))
        return
    for model in results:
        for size, row in model["batches"].items():
            print(
                f"{model['ref']:32} batch {size:>3}: {row['us_per_call']:>9.1f} µs/call "
                f"{row['rows_per_s']:>11,.0f} rows/s "
                f"(keel predict {row['keel_predict_us_per_call']} µs)"
            )


if __name__ == "__main__":
    main()
