"""What tracing costs: keel before tracing, with it off, at 1% and at every request, in one run.

    .venv/bin/python bench/tracing_overhead.py BEFORE_COMMIT [--rounds 12] [--registry DIR]

breast-cancer at saturation (64 connections, bench/measure.py), over the records API
and v2 binary. Four servers run throughout on the server core, the load going to
each in turn for a short window, many rounds over, each round in a rotated order:

- ``before``: the commit before tracing (its ``src/`` from ``git archive``, on the same
  virtual environment);
- ``off``: the working tree with no ``OTEL_EXPORTER_OTLP_*`` endpoint (the default);
- ``1%``: traced, ``OTEL_TRACES_SAMPLER=traceidratio``, ``OTEL_TRACES_SAMPLER_ARG=0.01``;
- ``all``: traced, ``OTEL_TRACES_SAMPLER=always_on``: every request's seven spans.

The traced servers send to ``bench/otlp_sink.py`` on the load core, a collector
that takes every export and reads nothing, so the figure is keel's own cost. Ratios
are taken within each round (the machine's speed drifts between rounds) and their
median is the figure. Targets: off / before >= 0.98, 1% / off >= 0.95.

Writes ``bench/results/tracing/<date>.json`` and the tracing section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import machine
import measure
import payloads
import report
from before_after import short_commit, source_at
from instructions import instructions_per_request
from measure import Windows
from models import SMALL, build_registry, model_files
from run import unused_results_path
from servers import BENCH, LOAD_CORE, TASKSET, free_port, start_keel

REPO = BENCH.parent
SIDES = ("before", "off", "1%", "all")
# Requests in flight while instructions are counted: batches full, as at saturation.
INSTRUCTION_CONCURRENCY = 64
# After a traced server's window, before the next: its last spans are sent by then.
SETTLE_S = 1.0
# Each ratio: (numerator, denominator, target or None).
RATIOS = (("off", "before", 0.98), ("1%", "off", 0.95), ("all", "off", None))


def _metric(url: str, name: str) -> float:
    """The sum of a metric's samples on a server's /metrics."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()  # noqa: S310 - loopback
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("before", help="the commit before tracing")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--registry", type=Path)
    parser.add_argument(
        "--instructions",
        type=int,
        default=3000,
        help="requests counted under valgrind per side, 64 at a time (0: none)",
    )
    parser.add_argument("--results", type=Path, default=BENCH / "results" / "tracing")
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    args = parser.parse_args()
    started = time.monotonic()
    commit = short_commit(args.before)
    windows = Windows(duration_s=args.seconds, warmup_s=0.5, repeats=1)
    sink_port = free_port()
    sink = subprocess.Popen(
        [TASKSET, "-c", str(LOAD_CORE), sys.executable, str(BENCH / "otlp_sink.py"),
         str(sink_port)]
    )  # fmt: skip
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
        "PYTHONPATH": str(REPO / "src"),
    }
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    spans: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="keel-tracing-") as scratch_name:
        scratch = Path(scratch_name)
        registry = args.registry or scratch / "registry"
        if args.registry is None:
            build_registry(registry, scratch / "publish.log")
        model = model_files(registry, SMALL)
        bodies = [payloads.records(model.metadata), payloads.v2_binary(model.metadata)]
        envs = {
            "before": {"PYTHONPATH": str(source_at(args.before, scratch / "before"))},
            "off": {"PYTHONPATH": str(REPO / "src")},
            "1%": {
                **traced,
                "OTEL_TRACES_SAMPLER": "traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": "0.01",
            },
            "all": {**traced, "OTEL_TRACES_SAMPLER": "always_on"},
        }
        # No gRPC: four servers would each want its default port.
        servers = {
            side: start_keel(
                registry,
                [model.ref],
                scratch / f"{side}.log",
                {**env, "KEEL_SERVER__GRPC_PORT": "0"},
            )
            for side, env in envs.items()
        }
        try:
            for server in servers.values():
                server.wait_ready()
            for round_ in range(args.rounds):
                for body in bodies:
                    turns = list(servers.items())
                    shift = round_ % len(turns)
                    for side, server in turns[shift:] + turns[:shift]:
                        run = measure.saturation(server, body, windows)
                        runs.setdefault(body.protocol, {}).setdefault(side, []).append(run)
                        if side in ("1%", "all"):
                            # Its export thread sends what the window left queued on the
                            # server core: let it finish before the next server's window.
                            time.sleep(SETTLE_S)
                        print(
                            f"round {round_ + 1} {side:6} {body.protocol:10} "
                            f"{run['throughput']:9,.0f} req/s  p99 {run['latency_us'].get('p99')}"
                            f" µs  server CPU {run['server_cpu'] / run['throughput'] * 1e6:.1f}"
                            " µs a request",
                            flush=True,
                        )
            for side in ("1%", "all"):
                url = servers[side].url("/metrics")
                spans[side] = {
                    "exported": _metric(url, "keel_trace_spans_exported_total"),
                    "dropped": _metric(url, "keel_trace_spans_dropped_total"),
                }
        finally:
            for server in servers.values():
                server.stop()
        # Instructions a request, under valgrind: what the noise of a shared machine cannot move.
        instructions: dict[str, float] = {}
        try:
            for side, env in envs.items() if args.instructions else ():
                counts = instructions_per_request(
                    registry, model.ref, [bodies[1]], {**env, "KEEL_SERVER__GRPC_PORT": "0"},
                    scratch / f"{side.replace('%', 'pct')}-valgrind",  # valgrind reads % itself
                    args.instructions, INSTRUCTION_CONCURRENCY,
                )  # fmt: skip
                instructions[side] = counts[bodies[1].protocol]
                print(f"{side:6} {instructions[side]:,.0f} instructions a request", flush=True)
        finally:
            sink.terminate()
            sink.wait()
    results = {
        "date": datetime.date.today().isoformat(),
        "command": f"python bench/tracing_overhead.py {args.before} --rounds {args.rounds} "
        f"--seconds {args.seconds:g} --instructions {args.instructions}",
        "wall_s": round(time.monotonic() - started, 1),
        "machine": machine.describe(REPO),
        "before": commit,
        "model": model.ref,
        "rounds": args.rounds,
        "saturation": {protocol: _summary(by_side) for protocol, by_side in runs.items()},
        "spans": spans,
        "instructions": {
            "protocol": bodies[1].protocol,
            "concurrency": INSTRUCTION_CONCURRENCY,
            "requests": args.instructions,
            "per_request": instructions,
        },
    }
    for protocol, figures in results["saturation"].items():
        print(protocol, json.dumps(figures["ratios"]))
    print("spans", json.dumps(spans))
    args.results.mkdir(parents=True, exist_ok=True)
    out = unused_results_path(args.results, results["date"])
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")
    if not args.no_docs:
        page = args.docs.read_text()
        args.docs.write_text(report.replace_tracing(page, results, out))
        print(f"updated the tracing section of {args.docs}")


def _summary(by_side: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each side's medians, and each ratio's per-round values and median."""
    sides = {side: measure.summarize(by_side[side]) for side in SIDES}
    ratios = {}
    for numerator, denominator, target in RATIOS:
        pairs = zip(
            sides[numerator]["throughput_runs"], sides[denominator]["throughput_runs"], strict=True
        )
        per_round = [round(a / b, 3) for a, b in pairs]
        median = round(statistics.median(per_round), 3)
        ratios[f"{numerator} / {denominator}"] = {
            "rounds": per_round,
            "median": median,
            "target": target,
            "met": None if target is None else median >= target,
        }
    return {
        "sides": {
            side: {
                "throughput": figures["throughput"],
                "p50_us": figures["latency_us"].get("p50"),
                "p99_us": figures["latency_us"].get("p99"),
                "server_cpu_us": figures["server_cpu_us_per_request"],
            }
            for side, figures in sides.items()
        },
        "ratios": ratios,
    }


if __name__ == "__main__":
    main()
