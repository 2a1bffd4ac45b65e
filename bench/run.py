"""Every benchmark of issues 3 to 5 in one run: bench/results/<date>.json and docs/benchmarks.md.

    .venv/bin/python bench/run.py           # the full run, about twenty minutes
    .venv/bin/python bench/run.py --quick   # one short round of everything, about two

Servers run pinned to core 0, the load generator (this process) to core 1.
A fresh temporary registry holds the example models unless ``--registry``
names one that already has them. A second full run on one day is kept beside
the first, as ``<date>-2.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import batching
import machine
import report
import shadow_isolation
import startup
import targets
import throughput
from measure import Windows
from models import SMALL, SMALL_CANDIDATE, WIDE, build_registry, model_files
from servers import BENCH, LOAD_CORE, SERVER_CORE, TASKSET

REPO = BENCH.parent
FULL = Windows(duration_s=5.0, warmup_s=1.0, repeats=3)
QUICK = Windows(duration_s=2.0, warmup_s=0.5, repeats=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one short round of each measurement")
    parser.add_argument(
        "--registry", type=Path, help="reuse a registry that has the example models"
    )
    parser.add_argument("--results", type=Path, default=BENCH / "results")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="only regenerate the docs from a results file"
    )
    args = parser.parse_args()
    if args.render:
        results = json.loads(args.render.read_text())
        args.docs.write_text(report.render(results, _shown(args.render)))
        _say(f"wrote {args.docs}")
        return
    if (os.cpu_count() or 1) < 2:
        sys.exit("the benchmarks need two cores: one for the server, one for the load")
    os.sched_setaffinity(0, {LOAD_CORE})
    windows = QUICK if args.quick else FULL
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as scratch:
        results = run_all(args.registry, Path(scratch), windows, quick=args.quick)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    results["targets"] = targets.evaluate(results)
    args.results.mkdir(parents=True, exist_ok=True)
    out = unused_results_path(args.results, results["date"] + ("-quick" if args.quick else ""))
    out.write_text(json.dumps(results, indent=1) + "\n")
    _say(f"wrote {_shown(out)}")
    if not args.no_docs:
        args.docs.write_text(report.render(results, _shown(out)))
        _say(f"wrote {args.docs}")
    for verdict in results["targets"]:
        _say(
            f"{'PASS' if verdict['passed'] else 'FAIL'}  {verdict['target']}: {verdict['measured']}"
        )


def unused_results_path(directory: Path, name: str) -> Path:
    """``name.json``, or ``name-2.json`` and on when an earlier run that day is kept there."""
    out = directory / f"{name}.json"
    if name.endswith("-quick"):
        return out  # a quick run only ever stands in for the last one
    count = 1
    while out.exists():
        count += 1
        out = directory / f"{name}-{count}.json"
    return out


def run_all(registry: Path | None, scratch: Path, windows: Windows, quick: bool) -> dict[str, Any]:
    logs = scratch / "logs"
    logs.mkdir()
    results: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "command": "python bench/run.py" + (" --quick" if quick else ""),
        "machine": machine.describe(REPO),
        "windows": {
            "duration_s": windows.duration_s,
            "warmup_s": windows.warmup_s,
            "repeats": windows.repeats,
        },
        "pinning": {"server_core": SERVER_CORE, "load_core": LOAD_CORE},
    }
    if registry is None:
        registry = scratch / "registry"
        _say("publishing the example models into a fresh registry…")
        results["registry_build_s"] = round(build_registry(registry, logs / "registry.log"), 1)
    small, wide = model_files(registry, SMALL), model_files(registry, WIDE)
    results["models"] = {
        m.ref: {"bytes": m.size, "format": m.metadata.artifact.format}
        for m in (small, model_files(registry, SMALL_CANDIDATE), wide)
    }
    _say("in-process floor…")
    results["inprocess"] = inprocess(registry, windows)
    _say("load generator ceiling…")
    results["loadgen_ceiling"] = throughput.ceiling(windows, logs, _say)
    _say(f"{SMALL} over HTTP: naive vs keel…")
    results["small_model_http"] = throughput.compare(
        registry, small, windows, logs, _say, naive_sync=not quick
    )
    _say(f"{WIDE}: batching on vs off…")
    results["wide_model_batching"] = batching.compare(registry, wide, windows, logs, _say)
    _say("start-up and memory…")
    results["startup"] = startup.measure_startup(registry, [small, wide], windows, logs, _say)
    _say("shadow mode: the primary's latency with bad candidates…")
    results["shadow"] = shadow_isolation.compare(registry, windows, logs, _say)
    return results


def inprocess(registry: Path, windows: Windows) -> list[dict[str, Any]]:
    """The in-process floor, in its own process pinned to the servers' core."""
    seconds = 0.5 if windows.repeats > 1 else 0.25
    done = subprocess.run(
        [TASKSET, "-c", str(SERVER_CORE), sys.executable, str(BENCH / "inprocess.py"),
         "--registry", str(registry), "--repeats", str(windows.repeats),
         "--seconds", str(seconds), "--json", SMALL, SMALL_CANDIDATE, WIDE],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    floor: list[dict[str, Any]] = json.loads(done.stdout)
    for model in floor:
        for size, row in model["batches"].items():
            _say(f"  {model['ref']} batch {size}: {row['us_per_call']} µs/call")
    return floor


def _shown(path: Path) -> str:
    """A path as the docs link it: relative to the repository when it is inside it."""
    path = path.resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def _say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


if __name__ == "__main__":
    main()
