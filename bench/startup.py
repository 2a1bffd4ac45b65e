"""Start-up and memory: keel serving the small and the compute-bound model together.

Per round: time from process start until ``/v2/health/ready`` answers 200;
then the first hundred real requests, alternating between the two models on
one kept-alive connection, each timed alone (does the first pay a warm-up
tax?); for comparison, the warm server's first request on a new connection, at
once and after a second idle; resident memory once ready and at its peak under
concurrent load on the large model (does a second batch in flight copy the model?).
"""

from __future__ import annotations

import json
import socket
import statistics
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import measure
import payloads
from loadgen import LoadSpec, content_length, encode_request
from measure import Windows
from models import ModelFiles
from monitor import rss_of
from payloads import Payload
from servers import ServerProcess, start_keel

Progress = Callable[[str], None]
SEQUENCE = 100
IDLE_S = 1.0


def measure_startup(
    registry: Path,
    models: list[ModelFiles],
    windows: Windows,
    logs: Path,
    progress: Progress,
) -> dict[str, Any]:
    """Time to ready, first vs hundredth request per model, and RSS idle and under load."""
    bodies = [payloads.records(m.metadata) for m in models]
    rounds = []
    for round_ in range(windows.repeats):
        server = start_keel(registry, [m.ref for m in models], logs / f"startup-{round_}.log")
        try:
            ready_s = server.wait_ready()
            rss_ready = rss_of(server.pid)
            latencies = first_requests(server, bodies, SEQUENCE)
            # The same server, warm now: what a first request on a new connection costs by
            # itself, at once and after the machine sat idle (as it did before the first).
            new_connection = first_requests(server, bodies, 1)
            time.sleep(IDLE_S)
            after_idle = first_requests(server, bodies, 1)
            rss_after_sequence = rss_of(server.pid)
            under_load = measure.saturation(server, bodies[-1], windows)
            time_to_ready = {m.ref: _time_to_ready(server, m) for m in models}
        finally:
            server.stop()
        rounds.append(
            {
                "live_s": server.live_s,
                "ready_s": ready_s,
                "model_time_to_ready_s": time_to_ready,
                "rss_ready": rss_ready,
                "rss_after_sequence": rss_after_sequence,
                "rss_peak_under_load": under_load["peak_rss"],
                "load_throughput": under_load["throughput"],
                "sequence_us": {
                    body.path: [round(s * 1e6, 1) for s in series]
                    for body, series in zip(bodies, latencies, strict=True)
                },
                "warm_new_connection_us": {
                    body.path: round(series[0] * 1e6, 1)
                    for body, series in zip(bodies, new_connection, strict=True)
                },
                "warm_after_idle_us": {
                    body.path: round(series[0] * 1e6, 1)
                    for body, series in zip(bodies, after_idle, strict=True)
                },
            }
        )
        progress(
            f"round {round_ + 1}: ready in {ready_s:.2f} s, RSS {rss_ready / 2**20:.0f} MiB, "
            + ", ".join(
                f"{b.path}: first {s[0] * 1e6:.0f} µs, 100th {s[-1] * 1e6:.0f} µs"
                for b, s in zip(bodies, latencies, strict=True)
            )
        )
    return {
        "models": {m.ref: m.size for m in models},
        "rounds": rounds,
        **_summary(rounds, bodies),
    }


def first_requests(server: ServerProcess, bodies: list[Payload], count: int) -> list[list[float]]:
    """Seconds taken by each of the first ``count`` requests per body, sent alternately, alone."""
    requests = [
        encode_request(LoadSpec(server.url(b.path), body=b.body, headers=b.headers))[2]
        for b in bodies
    ]
    series: list[list[float]] = [[] for _ in bodies]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            for request, timings in zip(requests, series, strict=True):
                started = time.perf_counter()
                sock.sendall(request)
                status = _read_response(sock)
                timings.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"a start-up request was answered {status}")
    return series


def _read_response(sock: socket.socket) -> int:
    buffer = b""
    while (end := buffer.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        buffer += chunk
    head = buffer[:end]
    needed = end + 4 + content_length(head)
    while len(buffer) < needed:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection mid-response")
        buffer += chunk
    return int(head[9:12])


def _time_to_ready(server: ServerProcess, model: ModelFiles) -> float | None:
    url = server.url(f"/v2/models/{model.metadata.name}")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback URL
        value = json.load(response)["keel"]["time_to_ready_s"]
        return None if value is None else round(float(value), 4)


def _summary(rounds: list[dict[str, Any]], bodies: list[Payload]) -> dict[str, Any]:
    first_vs_hundredth = {}
    for body in bodies:
        series = [r["sequence_us"][body.path] for r in rounds]
        first_vs_hundredth[body.path] = {
            "first_us": statistics.median(s[0] for s in series),
            "hundredth_us": statistics.median(s[-1] for s in series),
            "median_2_to_100_us": statistics.median(statistics.median(s[1:]) for s in series),
            "ratio": round(statistics.median(s[0] / s[-1] for s in series), 2),
            "ratio_runs": [round(s[0] / s[-1], 2) for s in series],
            "ratio_to_median": round(
                statistics.median(s[0] / statistics.median(s[1:]) for s in series), 2
            ),
            **{
                key: statistics.median(r[key][body.path] for r in rounds)
                for key in ("warm_new_connection_us", "warm_after_idle_us")
                if all(key in r for r in rounds)
            },
        }
    return {
        "ready_s": round(statistics.median(r["ready_s"] for r in rounds), 3),
        "ready_s_runs": [round(r["ready_s"], 3) for r in rounds],
        "live_s": round(statistics.median(r["live_s"] or 0.0 for r in rounds), 3),
        "rss_ready": statistics.median(r["rss_ready"] for r in rounds),
        "rss_peak_under_load": statistics.median(r["rss_peak_under_load"] for r in rounds),
        "first_vs_hundredth": first_vs_hundredth,
    }
