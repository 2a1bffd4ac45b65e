"""Watching a server while load runs: its peak resident memory, its CPU, and everyone else's.

The machine is shared, so each measurement also records how busy each core
was with work that was neither the server nor the benchmark itself; the
report quotes it so noisy runs can be told from slow servers.
"""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

import psutil

SAMPLE_S = 0.05
# A core counts as quiet when other processes keep it busy less than this.
QUIET_BELOW = 0.10
# The speed probe: a fixed piece of pure-Python work, timed on one core.
_PROBE_RANGE = 200_000


class ServerMonitor:
    """Samples a process's RSS in a background thread; CPU accounting from start to stop.

    Use as a context manager around one measured run; read the attributes after.
    """

    def __init__(self, pid: int, server_core: int, load_core: int) -> None:
        self._process = psutil.Process(pid)
        self._me = psutil.Process(os.getpid())
        self._server_core = server_core
        self._load_core = load_core
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self.peak_rss = 0
        self.server_cpu = 0.0
        """Server CPU seconds per wall second."""
        self.foreign_server_core = 0.0
        """Share of the server's core busy with other processes."""
        self.foreign_load_core = 0.0
        """Share of the load generator's core busy with other processes."""

    def __enter__(self) -> ServerMonitor:
        self._wall = time.perf_counter()
        self._cores = psutil.cpu_times(percpu=True)
        self._server_times = self._process.cpu_times()
        self._my_times = self._me.cpu_times()
        self.peak_rss = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        wall = max(1e-9, time.perf_counter() - self._wall)
        cores = psutil.cpu_times(percpu=True)
        server = _cpu_seconds(self._process.cpu_times()) - _cpu_seconds(self._server_times)
        mine = _cpu_seconds(self._me.cpu_times()) - _cpu_seconds(self._my_times)
        busy = [
            _busy(after) - _busy(before) for before, after in zip(self._cores, cores, strict=True)
        ]
        self.server_cpu = round(server / wall, 3)
        self.foreign_server_core = round(max(0.0, busy[self._server_core] - server) / wall, 3)
        self.foreign_load_core = round(max(0.0, busy[self._load_core] - mine) / wall, 3)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
            except psutil.Error:
                return


def rss_of(pid: int) -> int:
    """Resident bytes of a process now."""
    return int(psutil.Process(pid).memory_info().rss)


def _cpu_seconds(times: psutil._common.pcputimes) -> float:
    return float(times.user + times.system)


def _busy(times: psutil._common.scputimes) -> float:
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(
        sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    )


def wait_for_quiet(max_wait_s: float, sample_s: float = 0.25) -> float:
    """Wait (at most ``max_wait_s``) until no core is busy with other work; seconds waited.

    Called between runs, when the server under test is idle, so whatever keeps
    a core busy belongs to someone else on the shared machine.
    """
    started = time.perf_counter()
    while True:
        busy = psutil.cpu_percent(interval=sample_s, percpu=True)
        waited = time.perf_counter() - started
        if max(busy) < QUIET_BELOW * 100 or waited >= max_wait_s:
            return round(waited, 2)


def speed_probe(core: int) -> float:
    """Milliseconds a fixed pure-Python loop takes on ``core`` (best of three).

    The hypervisor can slow a core down without any process showing up as
    busy; comparing probes across runs shows how much the machine's speed moved.
    """
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            sum(range(_PROBE_RANGE))
            best = min(best, time.perf_counter() - started)
    finally:
        os.sched_setaffinity(0, before)
    return round(best * 1000, 3)
