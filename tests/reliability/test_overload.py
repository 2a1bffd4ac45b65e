"""Overload: open-loop traffic at three times keel's measured capacity, on a real server.

Each test measures a lone request's latency and the server's capacity (a short closed
loop that never fills the queue), offers three times that rate in an open loop for
``RELIABILITY_OVERLOAD_SECONDS`` (3 s in CI; see docs/reliability.md for the full run), and
measures the lone request again, without a restart (within a few seconds, for the noise).

Both run with small batching limits (8 queued rows, one row per batch, one batch at a
time) so that the queue, not the default 2,048 rows, decides when to shed.

* ``wide-mlp`` costs about a millisecond a row: the model is the bottleneck, so excess
  requests pile up in the batcher's queue, which is what shedding protects.
* ``breast-cancer`` costs 10 µs a row and keel's HTTP and validation work per request
  is nearly all of it: at three times capacity the event loop itself is saturated,
  and a 503 costs the loop nearly as much as a 200. No queue inside keel can bound
  latency then; the backlog waits in the socket buffers and the clients. The test holds
  what keel does guarantee there (every answer a 200 or a 503 with Retry-After, no
  dropped connection, bounded memory, normal latency afterwards) and records the
  latency it cannot bound.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from built_models import WIDE_MLP
from figures import Figures
from load_driver import OpenLoopRun, closed_loop, open_loop, p99_ms
from served_models import json_body

from keel.registry import Registry
from serving.keel_server import ServerProcess, start_server

pytestmark = pytest.mark.integration

SECTION = "overload"
MULTIPLE = 3.0
SMALL_LIMITS = {
    "KEEL_BATCHING__MAX_QUEUE_SIZE": "8",
    "KEEL_BATCHING__MAX_BATCH_SIZE": "1",
    "KEEL_BATCHING__MAX_BATCHES_IN_FLIGHT": "1",
    # One model thread, one ONNX Runtime thread: the capacity is one core's, and the
    # other core is left to the event loop and the load generator.
    "KEEL_SERVER__INFERENCE_THREADS": "1",
    "KEEL_RUNTIME__INTRA_OP_THREADS": "1",
    "KEEL_SERVER__WATCH_INTERVAL_S": "0",
}
# The bounds, and why they hold on a busy two-core VM yet fail without shedding:
# * With 8 queued rows and one row running, an accepted request waits behind at most
#   nine model calls (a few ms each); the wide model's accepted p99 measured 45-105 ms.
#   Without shedding (an unbounded queue, or the default 2,048 rows) the queue grows by
#   two requests for every one served, so after 3 s the last accepted request waited
#   about 6 s (measured: p99 8.2 s with MAX_QUEUE_SIZE=100000), and in the full-length
#   run past the 10 s default deadline, which answers 504. One second sits 10x above
#   the healthy figure and 6x below the broken one.
ACCEPTED_P99_BOUND_MS = 1000.0
# A shed request is refused before it queues: measured p99 2-18 ms. A refusal that
# waited for the queue would take as long as an accepted request's p99 without shedding.
# Counted from when the request was written, not when it was due: a stall of the
# generator's own (the VM's noise, a collection in the pytest process) makes the requests
# due meanwhile arrive together when it ends, and nearly all of them are shed, so their
# due-time p99 is the stall's length whatever the server does (CI: 1.2 s, twice).
SHED_P99_BOUND_MS = 1000.0
# The queue holds 8 rows, so memory may not grow with the load: measured +0-2 MiB. This
# bound is the weaker witness against a missing queue limit (the generator's 1,024
# connections cap what a server can hold: an unbounded queue measured +16 MiB). It
# fails a server that keeps 2 KiB of each request it sheds, in the full run (54,000
# shed); the p99 bound above is what a missing queue limit fails.
RSS_GROWTH_BOUND_MIB = 64
# A lone request after the burst, against one before it (p50 of a second of them each);
# measured 0.7-1.2x. A server still working off a hidden backlog would be far slower.
RECOVERY_FACTOR = 3.0
# The shared VM's noise alone once made a whole second 3.3x slower (CI: 1.8 ms before the
# burst, 6.0 ms after), so the server has this many one-second windows to show it is back
# to normal. A lasting slowdown (leaked connections, a loop still busy) fails every one.
RECOVERY_WINDOWS = 3
# While shedding, the server must still serve: measured 45-65% of capacity (the refused
# requests' loop work competes with the model thread for the GIL).
MIN_GOODPUT_SHARE = 0.2


@dataclass(frozen=True)
class Overload:
    """What one overload run measured."""

    capacity_rps: float
    lone_before_us: float
    lone_after_us: float
    burst: OpenLoopRun
    rss_before_mib: float
    rss_peak_mib: float

    @property
    def accepted(self) -> int:
        return len(self.burst.of_status(200))

    @property
    def shed(self) -> int:
        return len(self.burst.of_status(503))

    def record(self, figures: Figures, case: str) -> None:
        burst = self.burst
        figures.add(
            SECTION,
            case,
            seconds=round(burst.duration_s),
            capacity_rps=round(self.capacity_rps),
            offered_rps=round(burst.rate),
            offered=burst.offered,
            accepted=self.accepted,
            shed=self.shed,
            shed_without_retry_after=sum(a.retry_after is None for a in burst.of_status(503)),
            other_statuses=len(burst.answers) - self.accepted - self.shed,
            unanswered=burst.unanswered,
            unsent=burst.unsent,
            accepted_p99_us=round(p99_ms(burst.of_status(200)) * 1000),
            shed_p99_us=round(p99_ms(burst.of_status(503)) * 1000),
            shed_response_p99_us=round(p99_ms(burst.of_status(503), from_written=True) * 1000),
            peak_connections=burst.peak_connections,
            rss_before_mib=round(self.rss_before_mib),
            rss_peak_mib=round(self.rss_peak_mib),
            lone_before_us=round(self.lone_before_us),
            lone_after_us=round(self.lone_after_us),
        )


class PeakMemory:
    """Samples a process's resident memory in a thread; ``peak`` is the most seen (MiB)."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.process = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def now(self) -> float:
        return float(self.process.memory_info().rss) / 2**20

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, self.now())


def _lone_latency_us(url: str, body: bytes) -> float:
    """Median latency of one connection sending requests back to back for a second."""
    run = closed_loop(url, body, connections=1, seconds=1.0)
    return run.latency_us["p50"]


def overload(server: ServerProcess, path: str, body: bytes, seconds: float) -> Overload:
    """Capacity, then three times that for ``seconds``, with latency before and after."""
    url = server.url + path
    lone_before = _lone_latency_us(url, body)
    # Fewer connections than the queue holds rows: capacity is measured without shedding.
    saturation = closed_loop(url, body, connections=4, seconds=2.0)
    assert set(saturation.status) == {"200"}, saturation.status
    capacity = saturation.status["200"] / saturation.duration_s
    with PeakMemory(server.process.pid) as memory:
        rss_before = memory.peak
        burst = open_loop(url, body, rate=MULTIPLE * capacity, duration_s=seconds)
    lone_after = _recovered_latency_us(url, body, RECOVERY_FACTOR * lone_before)
    assert server.process.poll() is None, server.log.read_text()
    return Overload(capacity, lone_before, lone_after, burst, rss_before, memory.peak)


def _recovered_latency_us(url: str, body: bytes, bound_us: float) -> float:
    """The first one-second lone latency within ``bound_us``, else the best of the windows."""
    windows = []
    for _ in range(RECOVERY_WINDOWS):
        windows.append(_lone_latency_us(url, body))
        if windows[-1] < bound_us:
            break
    return min(windows)


def _check_survived(result: Overload) -> None:
    """What keel guarantees at any overload: only 200s and prompt-to-parse 503s, nothing lost."""
    burst = result.burst
    statuses = burst.statuses()
    assert set(statuses) <= {200, 503}, f"answers other than 200 and 503: {statuses}"
    assert result.shed > 0, f"nothing was shed at {MULTIPLE}x capacity: {statuses}"
    assert all(
        a.retry_after is not None and int(a.retry_after) >= 1 for a in burst.of_status(503)
    ), "a 503 without a Retry-After of at least a second"
    assert burst.unanswered == 0, f"{burst.unanswered} requests sent and never answered"
    assert burst.connect_errors == 0
    growth = result.rss_peak_mib - result.rss_before_mib
    assert growth < RSS_GROWTH_BOUND_MIB, f"resident memory grew {growth:.0f} MiB"
    assert result.lone_after_us < RECOVERY_FACTOR * result.lone_before_us, (
        f"a lone request took {result.lone_after_us:.0f} µs after the burst, "
        f"{result.lone_before_us:.0f} µs before"
    )


def _body(registry: Path, ref: str) -> bytes:
    record = dict(Registry(registry).resolve(ref).golden.inputs[0])
    return json_body({"instances": [record]})


def _start(registry: Path, ref: str, log: Path) -> ServerProcess:
    server = start_server(registry, (ref,), log, **SMALL_LIMITS)
    server.wait_ready()
    return server


def test_a_model_bound_server_at_three_times_capacity_sheds_and_keeps_its_p99(
    wide_registry: Path, tmp_path: Path, overload_seconds: float, figures: Figures
) -> None:
    ref = f"{WIDE_MLP}@production"
    server = _start(wide_registry, ref, tmp_path / "server.log")
    try:
        result = overload(
            server, f"/v1/models/{WIDE_MLP}/predict", _body(wide_registry, ref), overload_seconds
        )
    finally:
        stopped = server.stop()
    result.record(figures, f"{WIDE_MLP} (model-bound, ~1 ms a row)")
    assert stopped in (0, -signal.SIGTERM), server.log.read_text()
    _check_survived(result)
    burst = result.burst
    assert burst.unsent == 0, f"{burst.unsent} requests could not even be sent"
    accepted_p99 = p99_ms(burst.of_status(200))
    assert accepted_p99 < ACCEPTED_P99_BOUND_MS, f"accepted p99 {accepted_p99:.0f} ms"
    shed_p99 = p99_ms(burst.of_status(503), from_written=True)
    assert shed_p99 < SHED_P99_BOUND_MS, f"503s took up to {shed_p99:.0f} ms (p99)"
    goodput = result.accepted / burst.duration_s
    assert goodput > MIN_GOODPUT_SHARE * result.capacity_rps, (
        f"served {goodput:.0f} req/s while shedding; capacity {result.capacity_rps:.0f}"
    )


def test_an_overhead_bound_server_at_three_times_capacity_answers_everything_it_reads(
    demo_registry: Path, tmp_path: Path, overload_seconds: float, figures: Figures
) -> None:
    ref = "breast-cancer@production"
    server = _start(demo_registry, ref, tmp_path / "server.log")
    try:
        result = overload(
            server, "/v1/models/breast-cancer/predict", _body(demo_registry, ref), overload_seconds
        )
    finally:
        stopped = server.stop()
    result.record(figures, "breast-cancer (overhead-bound, ~10 µs a row)")
    assert stopped in (0, -signal.SIGTERM), server.log.read_text()
    _check_survived(result)
