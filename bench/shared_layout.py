"""Speed of the shared ONNX layout against the model as published, in-process.

For each ONNX model reference, two runtimes are loaded in this one process the
way keel serve loads them: as published (what every version ran from before the
layout existed) and from the shared layout derived into a scratch cache
(``keel.runtimes.onnx_layout``). Rounds alternate which goes first; in each, both
are called back to back with the model's own golden rows at batch 1 and 64, and
the ratio of their µs per call is taken within the round. Reported per model and
batch: the median µs per call of each and the median and range of the rounds'
ratios (layout / published; below 1 is faster). The machine's drift lands on
both sides of every ratio.

    taskset -c 0 .venv/bin/python bench/shared_layout.py --registry DIR \\
        breast-cancer@production breast-cancer@candidate digits-wide-mlp@production

Writes ``bench/results/shared-layout/<date>.json`` and the shared-layout section of
docs/benchmarks.md (``--no-docs`` to leave the page alone).
"""

from __future__ import annotations

import datetime
import functools
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import machine
import numpy as np
import report
from inprocess import time_calls
from sections import keep_run, section_parser
from servers import BENCH

from keel.loading import load_version
from keel.registry import Registry
from keel.settings import RuntimeSettings
from keel.signature import to_arrays

BATCH_SIZES = (1, 64)
REPO = BENCH.parent


def measure(registry: Path, ref: str, rounds: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="keel-layout-") as cache:
        store = Registry(str(registry), cache_dir=Path(cache))
        metadata = store.resolve(ref)
        if metadata.artifact.format != "onnx":
            raise SystemExit(f"{ref} is {metadata.artifact.format}, not ONNX")
        every = RuntimeSettings(shared_layout_min_bytes=0)
        sides = {
            "published": load_version(store, metadata, every).runtime,
            "layout": load_version(store, metadata, every, shared_layout=True).runtime,
        }
        golden = list(metadata.golden.inputs)
        rows = [golden[i % len(golden)] for i in range(max(BATCH_SIZES))]
        result: dict[str, Any] = {"ref": ref, "bytes": sum(f.size for f in metadata.files.values())}
        for size in BATCH_SIZES:
            inputs = to_arrays(rows[:size], metadata.signature)
            times: dict[str, list[float]] = {name: [] for name in sides}
            ratios = []
            for index in range(rounds):
                order = list(sides) if index % 2 == 0 else list(reversed(sides))
                taken = {}
                for name in order:
                    call = functools.partial(sides[name].predict, inputs)
                    taken[name] = time_calls(call, seconds)
                    times[name].append(taken[name] * 1e6)
                ratios.append(taken["layout"] / taken["published"])
            result[f"batch {size}"] = {
                "published_us": round(statistics.median(times["published"]), 1),
                "layout_us": round(statistics.median(times["layout"]), 1),
                "ratio": round(statistics.median(ratios), 3),
                "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
            }
        for runtime in sides.values():
            runtime.close()
        return result


def main() -> None:
    parser = section_parser(__doc__, "shared-layout", rounds=9, seconds=0.5)
    parser.add_argument("refs", nargs="+")
    args = parser.parse_args()
    started = time.perf_counter()
    models = [measure(args.registry, ref, args.rounds, args.seconds) for ref in args.refs]
    results = {
        "date": datetime.date.today().isoformat(),
        "command": "python bench/shared_layout.py " + " ".join(args.refs),
        "machine": machine.describe(REPO),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "wall_s": round(time.perf_counter() - started, 1),
        "models": models,
    }
    keep_run(args, results, report.replace_shared_layout)
    for result in models:
        for size in BATCH_SIZES:
            row = result[f"batch {size}"]
            print(
                f"{result['ref']:32} batch {size:>2}: published {row['published_us']:>9.1f} µs, "
                f"layout {row['layout_us']:>9.1f} µs, layout/published {row['ratio']:.3f} "
                f"(rounds {row['ratio_range'][0]:.3f} to {row['ratio_range'][1]:.3f})",
                file=sys.stderr,
            )


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
