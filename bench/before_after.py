"""Saturation and in-process cost of keel at an earlier commit and of the working tree.

    .venv/bin/python bench/before_after.py BEFORE_COMMIT [--rounds 12] [--registry DIR]

A change to the request path must not cost throughput: this measures both sides in one
run, on the same registry, the same load generator and the same pinned cores, a round
of each in turn so that the shared machine's drift lands on both. The earlier commit
runs from a copy of its ``src/`` (``git archive``) on the same virtual environment.
Three measurements:

- saturation over HTTP (``measure.saturation``): requests a second, p99 and the
  server's CPU time a request, per protocol. Both servers run throughout, on the same
  core, and the load goes to each in turn for a short window, many times over: the
  machine's speed swings by half within a minute, and a ratio taken between windows
  seconds apart is the least touched by it;
- the application in-process (``app_profile.py``: routing, checks, batcher and model,
  no sockets), microseconds a request at one request at a time and at 64, the
  fastest of its repeats: the cost of the checks on the request path, with less of
  the machine's noise than a network run;
- the whole server's CPU instructions a request, under valgrind (``instructions.py``),
  once a side, one request at a time and 64 at a time (the saturated path, batches
  full): a count no other tenant of the machine can move.

Writes ``bench/results/before-after/<date>.json`` and the "Before and after" section
of docs/benchmarks.md (``--no-docs`` to leave the page alone).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import machine
import measure
import payloads
import report
from instructions import instructions_per_request
from measure import Windows
from models import DIGITS, SMALL, build_registry, model_files
from run import unused_results_path
from servers import BENCH, SERVER_CORE, TASKSET, start_keel

REPO = BENCH.parent
PROTOCOLS = ("records", "v2-json", "v2-binary")
IN_PROCESS_CONCURRENCY = (1, 64)
# One request at a time (every request a batch of one) and 64 (batches full, as at saturation).
INSTRUCTION_CONCURRENCY = (1, 64)
# In-process, a model with integer features too: the checks the v2 API gained.
IN_PROCESS_MODELS = (SMALL, DIGITS)


def source_at(commit: str, into: Path) -> Path:
    """The ``src/`` folder of ``commit``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "src"],  # noqa: S607 - git on PATH
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def short_commit(revision: str) -> str:
    """``revision``'s abbreviated commit id, as the results name the side it measured."""
    return subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", revision],  # noqa: S607 - git on PATH
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", help="the commit to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--registry", type=Path)
    parser.add_argument(
        "--in-process-rounds", type=int, default=4, help="rounds of the in-process measurement"
    )
    parser.add_argument("--in-process-requests", type=int, default=2000)
    parser.add_argument(
        "--instruction-requests", type=int, default=1000, help="0: no valgrind count"
    )
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "before-after")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    args = parser.parse_args()
    started = time.monotonic()
    commit = short_commit(args.before)
    windows = Windows(duration_s=args.seconds, warmup_s=0.5, repeats=1)
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
            "before": {"PYTHONPATH": str(source_at(args.before, scratch / "before"))},
            "after": {"PYTHONPATH": str(REPO / "src")},
        }
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        servers = {
            side: start_keel(registry, [model.ref], scratch / f"{side}.log", env)
            for side, env in sides.items()
        }
        try:
            for server in servers.values():
                server.wait_ready()
            for round_ in range(args.rounds):
                for body in bodies:
                    # Each side goes first in every other round, so neither always meets
                    # a machine just warmed (or just disturbed) by the other.
                    turns = list(servers.items())
                    for side, server in turns if round_ % 2 == 0 else turns[::-1]:
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
            for server in servers.values():
                server.stop()
        in_process: dict[str, dict[str, list[float]]] = {}
        for round_ in range(args.in_process_rounds):
            order = list(sides.items())
            for side, env in order if round_ % 2 == 0 else order[::-1]:
                for ref in IN_PROCESS_MODELS:
                    for figures in _in_process(registry, ref, env, args, scratch / side):
                        key = f"{ref} {figures['protocol']} c{figures['concurrency']}"
                        runs_of = in_process.setdefault(key, {}).setdefault(side, [])
                        runs_of.append(figures["min_us"])
                        print(
                            f"round {round_ + 1} {side:6} in-process {key:40} "
                            f"{figures['min_us']:7.1f} µs a request",
                            flush=True,
                        )
        # Concurrency -> protocol -> side -> instructions a request.
        instructions: dict[str, dict[str, dict[str, float]]] = {}
        for concurrency in INSTRUCTION_CONCURRENCY if args.instruction_requests else ():
            for side, env in sides.items():
                counts = instructions_per_request(
                    registry, model.ref, bodies, env,
                    scratch / f"{side}-valgrind-c{concurrency}",
                    args.instruction_requests * concurrency_factor(concurrency), concurrency,
                )  # fmt: skip
                for protocol, count in counts.items():
                    by_protocol = instructions.setdefault(str(concurrency), {})
                    by_protocol.setdefault(protocol, {})[side] = count
                    print(
                        f"{side:6} {protocol:10} {concurrency:2} at a time: {count:,} "
                        "instructions a request",
                        flush=True,
                    )
    results = {
        "date": datetime.date.today().isoformat(),
        "command": f"python bench/before_after.py {args.before} --rounds {args.rounds} "
        f"--seconds {args.seconds:g} --in-process-rounds {args.in_process_rounds}",
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine.describe(REPO),
        "before": commit,
        "model": model.ref,
        "rounds": args.rounds,
        "in_process_rounds": args.in_process_rounds,
        "saturation": {protocol: _summary(by_side) for protocol, by_side in runs.items()},
        "in_process": {key: _in_process_summary(by_side) for key, by_side in in_process.items()},
        "instructions_by_concurrency": {
            concurrency: {
                protocol: {**counts, "ratio": round(counts["after"] / counts["before"], 3)}
                for protocol, counts in by_protocol.items()
            }
            for concurrency, by_protocol in instructions.items()
        },
        "instruction_requests": args.instruction_requests,
    }
    for protocol, figures in results["saturation"].items():
        print(
            f"{protocol:10} before {figures['before']:9,.0f}  after {figures['after']:9,.0f} req/s"
            f"  after/before per round {figures['ratios']} (median {figures['ratio']})"
            f"  p99 µs {figures['p99_before']} -> {figures['p99_after']}"
            f"  server CPU µs a request {figures['cpu_before']} -> {figures['cpu_after']}"
        )
    for key, figures in results["in_process"].items():
        print(
            f"in-process {key:40} before {figures['before']:7.1f}  after {figures['after']:7.1f}"
            f" µs a request  after/before per round {figures['ratios']} "
            f"(median {figures['ratio']})"
        )
    args.results.mkdir(parents=True, exist_ok=True)
    out = unused_results_path(args.results, results["date"])
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")
    if not args.no_docs:
        page = args.docs.read_text()
        args.docs.write_text(report.replace_before_after(page, results, out))
        print(f"updated the before-and-after section of {args.docs}")


def concurrency_factor(concurrency: int) -> int:
    """Requests counted at ``concurrency``, as a multiple of those counted one at a time.

    At 64 at a time a batch runs about every 32 requests: three times as many give the
    per-batch work as many batches to average over as the per-request work gets.
    """
    return 1 if concurrency == 1 else 3


def _in_process(
    registry: Path, ref: str, env: dict[str, str], args: argparse.Namespace, scratch: Path
) -> list[dict[str, Any]]:
    """One run of app_profile.py on this side's source, on the server's core."""
    scratch.mkdir(exist_ok=True)
    out = scratch / "in-process.json"
    argv = [TASKSET, "-c", str(SERVER_CORE), sys.executable, str(BENCH / "app_profile.py"),
            ref, "--registry", str(registry), "--protocol", *PROTOCOLS,
            "--concurrency", *map(str, IN_PROCESS_CONCURRENCY),
            "--requests", str(args.in_process_requests), "--repeats", "5",
            "--out", str(out)]  # fmt: skip
    subprocess.run(argv, env={**os.environ, **env}, check=True, capture_output=True)
    figures: list[dict[str, Any]] = json.loads(out.read_text())
    return figures


def _in_process_summary(by_side: dict[str, list[float]]) -> dict[str, Any]:
    """Each side's median over rounds of its fastest repeat, and the per-round ratios."""
    before, after = by_side["before"], by_side["after"]
    ratios = [round(a / b, 3) for a, b in zip(after, before, strict=True)]
    return {
        "before": round(statistics.median(before), 2),
        "after": round(statistics.median(after), 2),
        "before_runs": before,
        "after_runs": after,
        "ratios": ratios,
        "ratio": round(statistics.median(ratios), 3),
    }


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
    main()
