"""Saturation of keel at an earlier commit and of the working tree, in alternating rounds.

    .venv/bin/python bench/before_after.py BEFORE_COMMIT [--rounds 5] [--registry DIR]

A change to the request path must not cost throughput: this measures both sides in one
run, on the same registry, the same load generator and the same pinned cores, a round
of each in turn so that the shared machine's drift lands on both. The earlier commit
runs from a copy of its ``src/`` (``git archive``) on the same virtual environment.
Prints, per protocol, the median saturation of each side, their ratio per round and
the median p99; writes the whole result as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import measure
import payloads
from measure import Windows
from models import SMALL, build_registry, model_files
from servers import BENCH, start_keel

REPO = BENCH.parent


def _source_at(commit: str, into: Path) -> Path:
    """The ``src/`` folder of ``commit``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"],  # noqa: S607 - git on PATH
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", help="the commit to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--registry", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    windows = Windows(duration_s=args.seconds, warmup_s=1.0, repeats=1)
    with tempfile.TemporaryDirectory(prefix="keel-before-after-") as scratch_name:
        scratch = Path(scratch_name)
        registry = args.registry or scratch / "registry"
        if args.registry is None:
            build_registry(registry, scratch / "publish.log")
        model = model_files(registry, SMALL)
        bodies = [
            payloads.records(model.metadata),
            payloads.v2_json(model.metadata),
            payloads.v2_binary(model.metadata),
        ]
        sides = {
            "before": {"PYTHONPATH": str(_source_at(args.before, scratch / "before"))},
            "after": {"PYTHONPATH": str(REPO / "src")},
        }
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for round_ in range(args.rounds):
            # Each side goes first in every other round, so neither always meets a
            # machine just warmed (or just disturbed) by the other.
            order = list(sides.items())
            for side, env in order if round_ % 2 == 0 else order[::-1]:
                server = start_keel(registry, [model.ref], scratch / f"{side}-{round_}.log", env)
                try:
                    server.wait_ready()
                    for body in bodies:
                        run = measure.saturation(server, body, windows)
                        runs.setdefault(body.protocol, {}).setdefault(side, []).append(run)
                        p99 = run["latency_us"].get("p99")
                        print(
                            f"round {round_ + 1} {side:6} {body.protocol:10} "
                            f"{run['throughput']:9,.0f} req/s  p99 {p99} µs  "
                            f"server CPU {run['server_cpu'] / run['throughput'] * 1e6:.1f} µs "
                            "a request",
                            flush=True,
                        )
                finally:
                    server.stop()
    summary = {protocol: _summary(by_side) for protocol, by_side in runs.items()}
    for protocol, figures in summary.items():
        print(
            f"{protocol:10} before {figures['before']:9,.0f}  after {figures['after']:9,.0f} req/s"
            f"  after/before per round {figures['ratios']} (median {figures['ratio']})"
            f"  p99 µs {figures['p99_before']} -> {figures['p99_after']}"
            f"  server CPU µs a request {figures['cpu_before']} -> {figures['cpu_after']}"
        )
    if args.out:
        args.out.write_text(json.dumps({"before": args.before, "summary": summary}, indent=2))


def _summary(by_side: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each side's medians (measure.summarize) and the median of the per-round ratios."""
    before, after = (measure.summarize(by_side[side]) for side in ("before", "after"))
    pairs = zip(after["throughput_runs"], before["throughput_runs"], strict=True)
    return {
        "before": before["throughput"],
        "after": after["throughput"],
        "ratios": [round(a / b, 3) for a, b in pairs],
        "ratio": measure.ratio_of_rounds(after, before),
        "p99_before": before["latency_us"]["p99"],
        "p99_after": after["latency_us"]["p99"],
        "cpu_before": before["server_cpu_us_per_request"],
        "cpu_after": after["server_cpu_us_per_request"],
    }


if __name__ == "__main__":
    sys.exit(main())
