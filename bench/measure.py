"""One measured load run against a running server, and the medians of repeated runs."""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from loadgen import LoadResult, LoadSpec, run_load, run_loads_together
from monitor import ServerMonitor, speed_probe, wait_for_quiet
from payloads import Payload
from servers import LOAD_CORE, SERVER_CORE, ServerProcess

SATURATION_CONNECTIONS = 64
OPEN_LOOP_CONNECTIONS = 64
# Before each run, wait this long at most for other processes to leave the cores alone,
# and no more than the budget over a whole benchmark, so a busy machine cannot stretch it.
QUIET_WAIT_S = 5.0
QUIET_BUDGET_S = 90.0
_quiet_waited = 0.0


@dataclass(frozen=True)
class Windows:
    """How long each run measures, after how much unmeasured warm-up, and how many runs."""

    duration_s: float
    warmup_s: float
    repeats: int


def load_run(
    server: ServerProcess,
    payload: Payload,
    windows: Windows,
    connections: int,
    rate: float | None = None,
    keep_samples: bool = False,
) -> dict[str, Any]:
    """Drive ``server`` with ``payload``; the load generator's result plus what the monitor saw.

    With ``keep_samples`` the result's ``samples_s`` holds every measured latency.
    """
    spec = _spec(server, payload, windows, connections, rate, keep_samples)
    waited, probe = _before_run()
    with ServerMonitor(server.pid, SERVER_CORE, LOAD_CORE) as monitor:
        result = run_load(spec)
    return _measured(result, monitor, waited, probe)


def open_loops_in_turn(
    servers: Sequence[ServerProcess],
    payload: Payload,
    windows: Windows,
    rate: float,
    slot_s: float,
    guard_s: float,
) -> list[dict[str, Any]]:
    """An open loop at ``rate`` for each server, the servers taking turns ``slot_s`` each.

    Over the window each server is driven for one slot in ``len(servers)``, at
    ``rate`` while it is driven, and no request is due in the last ``guard_s`` of a
    slot. Every measured latency is kept (``samples_s``).
    """
    specs = [
        dataclasses.replace(
            _spec(server, payload, windows, OPEN_LOOP_CONNECTIONS, rate, True),
            slot_s=slot_s,
            slot_count=len(servers),
            slot=slot,
            slot_guard_s=guard_s,
        )
        for slot, server in enumerate(servers)
    ]
    waited, probe = _before_run()
    with contextlib.ExitStack() as stack:
        monitors = [
            stack.enter_context(ServerMonitor(server.pid, SERVER_CORE, LOAD_CORE))
            for server in servers
        ]
        results = run_loads_together(specs)
    return [
        _measured(result, monitor, waited, probe)
        for result, monitor in zip(results, monitors, strict=True)
    ]


def _spec(
    server: ServerProcess,
    payload: Payload,
    windows: Windows,
    connections: int,
    rate: float | None,
    keep_samples: bool,
) -> LoadSpec:
    return LoadSpec(
        url=server.url(payload.path),
        body=payload.body,
        headers=payload.headers,
        connections=connections,
        duration_s=windows.duration_s,
        warmup_s=windows.warmup_s,
        rate=rate,
        keep_samples=keep_samples,
    )


def _before_run() -> tuple[float, float]:
    """Wait (within a budget) for quiet cores; the seconds waited and a speed probe."""
    global _quiet_waited
    waited = wait_for_quiet(min(QUIET_WAIT_S, max(0.0, QUIET_BUDGET_S - _quiet_waited)))
    _quiet_waited += waited
    return waited, speed_probe(SERVER_CORE)


def _measured(
    result: LoadResult, monitor: ServerMonitor, waited: float, probe: float
) -> dict[str, Any]:
    return {
        **asdict(result),
        "quiet_wait_s": waited,
        "speed_probe_ms": probe,
        "peak_rss": monitor.peak_rss,
        "server_cpu": monitor.server_cpu,
        "foreign_server_core": monitor.foreign_server_core,
        "foreign_load_core": monitor.foreign_load_core,
    }


def saturation(server: ServerProcess, payload: Payload, windows: Windows) -> dict[str, Any]:
    """Closed loop, many connections: the most the server answers per second."""
    return load_run(server, payload, windows, SATURATION_CONNECTIONS)


def lone(server: ServerProcess, payload: Payload, windows: Windows) -> dict[str, Any]:
    """Closed loop, one connection: the latency of a request that never waits for another."""
    return load_run(server, payload, windows, 1)


def open_loop(
    server: ServerProcess, payload: Payload, windows: Windows, rate: float
) -> dict[str, Any]:
    """Requests due at ``rate`` per second; latency counted from when each was due."""
    return load_run(server, payload, windows, OPEN_LOOP_CONNECTIONS, rate=rate)


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeated runs, the spread of throughput, and the worst noise seen."""
    throughputs = [r["throughput"] for r in runs]
    median_throughput = statistics.median(throughputs)
    latency = {
        key: statistics.median(r["latency_us"][key] for r in runs if r["latency_us"])
        for key in ("p50", "p90", "p99", "max")
        if any(r["latency_us"] for r in runs)
    }
    status: dict[str, int] = {}
    for run in runs:
        for code, count in run["status"].items():
            status[code] = status.get(code, 0) + count
    summary: dict[str, Any] = {
        "runs": len(runs),
        "p99_runs_us": [r["latency_us"].get("p99") for r in runs],
        "throughput": round(median_throughput, 1),
        "throughput_runs": throughputs,
        "throughput_spread": round((max(throughputs) - min(throughputs)) / median_throughput, 3)
        if median_throughput
        else None,
        "latency_us": latency,
        "status": status,
        "errors": sum(r["errors"] for r in runs),
        "unanswered": sum(r["unanswered"] for r in runs),
        "peak_rss": max(r["peak_rss"] for r in runs),
        "server_cpu": statistics.median(r["server_cpu"] for r in runs),
        # CPU the server spent per answer: the cost that bounds throughput on one core.
        "server_cpu_us_per_request": round(
            statistics.median(
                r["server_cpu"] / r["throughput"] * 1e6 for r in runs if r["throughput"]
            ),
            1,
        )
        if any(r["throughput"] for r in runs)
        else None,
        "generator_cpu": statistics.median(r["generator_cpu"] for r in runs),
        "foreign_server_core_max": max(r["foreign_server_core"] for r in runs),
        "foreign_load_core_max": max(r["foreign_load_core"] for r in runs),
        "speed_probe_ms": [r["speed_probe_ms"] for r in runs],
        "quiet_wait_s": [r["quiet_wait_s"] for r in runs],
    }
    lags = [r["send_lag_us"]["p99"] for r in runs if r.get("send_lag_us")]
    if lags:
        summary["send_lag_p99_us"] = statistics.median(lags)
    return summary


def ratio_of_rounds(numerator: dict[str, Any], denominator: dict[str, Any]) -> float | None:
    """Median over rounds of the throughput ratio measured within each round."""
    pairs = zip(numerator["throughput_runs"], denominator["throughput_runs"], strict=False)
    ratios = [a / b for a, b in pairs if b]
    return round(statistics.median(ratios), 2) if ratios else None
