"""Saturation throughput, keel's own HTTP layer vs granian (RSGI) in front of the same front.

    .venv/bin/python bench/http_layer/throughput.py --registry /tmp/demo-registry \\
        --rounds 3 --seconds 10 --out /tmp/throughput.json

breast-cancer@production, records API, one instance per request, 64 keep-alive
connections (bench/measure.py's saturation run, bench/loadgen.py's generator).
Servers on core 0, the generator on core 1, as bench/run.py pins them. Each
round starts each server afresh, keel then granian, so drift on the shared
machine lands on both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import measure  # noqa: E402
import payloads  # noqa: E402
import psutil  # noqa: E402
from measure import Windows  # noqa: E402
from models import SMALL, model_files  # noqa: E402
from servers import LOAD_CORE, ServerProcess, _start, free_port, start_keel  # noqa: E402

GRANIAN = os.environ.get("GRANIAN", "/tmp/granian-venv/bin/granian")


class GranianProcess(ServerProcess):
    """granian's main process; ``pid`` is its one worker once ready (the monitor watches it)."""

    worker: int | None = None

    @property
    def pid(self) -> int:
        return self.worker or self.process.pid

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        ready = super().wait_ready(timeout_s)
        children = psutil.Process(self.process.pid).children()
        self.worker = children[0].pid if children else None
        return ready


def start_granian(
    registry: Path, refs: list[str], log: Path, arrivals: str = "none"
) -> GranianProcess:
    port = free_port()
    argv = [GRANIAN, "--interface", "rsgi", "--workers", "1", "--runtime-threads", "1",
            "--loop", "uvloop", "--no-access-log", "--working-dir", str(HERE),
            "--port", str(port), "rsgi_app:app"]  # fmt: skip
    env = {
        "KEEL_REGISTRY": str(registry),
        "KEEL_SERVER__PORT": str(port),
        "HTTP_LAYER_REFS": ",".join(refs),
        "HTTP_LAYER_ARRIVALS": arrivals,
    }
    started = _start("granian", argv, "/v2/health/ready", log, env)
    return GranianProcess(
        started.label, started.process, started.port, started.ready_path, log, started.started
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--arrivals", default="none", choices=["zero", "none"])
    parser.add_argument("--only", choices=["keel", "granian"])
    parser.add_argument("--logs", type=Path, default=Path("/tmp/keel-http-layer-logs"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    os.sched_setaffinity(0, {LOAD_CORE})
    model = model_files(args.registry, SMALL)
    body = payloads.records(model.metadata)
    windows = Windows(duration_s=args.seconds, warmup_s=args.warmup, repeats=1)
    starters = {
        "keel": lambda log: start_keel(args.registry, [SMALL], log),
        "granian": lambda log: start_granian(args.registry, [SMALL], log, args.arrivals),
    }
    names = [args.only] if args.only else ["keel", "granian"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        for name in names:
            server = starters[name](args.logs / f"{name}-{round_}.log")
            try:
                server.wait_ready()
                run = measure.saturation(server, body, windows)
                run.pop("samples_s", None)
                run["round"] = round_
                runs[name].append(run)
                lat = run["latency_us"]
                print(f"round {round_ + 1} {name}: {run['throughput']:,.0f} req/s "
                      f"p50 {lat.get('p50')} µs p99 {lat.get('p99')} µs status {run['status']} "
                      f"foreign core0 {run['foreign_server_core']} core1 {run['foreign_load_core']}",
                      flush=True)  # fmt: skip
            finally:
                server.stop()
    summary = {name: measure.summarize(r) for name, r in runs.items() if r}
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": SMALL,
        "payload": "records, one instance",
        "connections": measure.SATURATION_CONNECTIONS,
        "seconds": args.seconds,
        "granian_arrivals": args.arrivals,
        "runs": runs,
        "summary": summary,
    }
    if len(names) == 2:
        result["ratio_granian_over_keel_per_round"] = [
            round(g["throughput"] / k["throughput"], 3)
            for k, g in zip(runs["keel"], runs["granian"], strict=True)
        ]
        result["ratio_median"] = statistics.median(result["ratio_granian_over_keel_per_round"])
        print("granian/keel per round:", result["ratio_granian_over_keel_per_round"])
    for name, s in summary.items():
        print(f"{name}: median {s['throughput']:,.0f} req/s, p50 {s['latency_us'].get('p50')} µs, "
              f"p99 {s['latency_us'].get('p99')} µs, cpu/req {s['server_cpu_us_per_request']} µs")  # fmt: skip
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
