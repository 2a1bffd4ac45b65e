"""``keel serve --workers N``: N worker processes on one port, kept running, stopped in order.

The supervisor binds the port itself, so an address in use is one clear error
before anything loads, and every worker inherits that one listening socket:
the kernel queues each new connection once, and whichever worker accepts it
answers, so a worker that dies leaves no connection waiting on a socket of its
own. Workers are fresh interpreters (``python -m keel.web.worker``), not forks:
a restart is the same start as the first, and nothing the supervisor holds
(threads, locks) is copied half-way into a worker.

- A worker that exits is started again after a pause that doubles with each
  exit in a row that came soon after its start (0.5 s up to 30 s); the others
  keep serving meanwhile.
- SIGTERM or SIGINT goes on to every worker as SIGTERM: each drops readiness at
  once, stops accepting, answers what it has read within
  ``server.grace_period_s`` and exits. A second signal goes on too (the workers
  then stop without waiting); a worker still running ``STOP_MARGIN_S`` past the
  grace period is killed.
- Runtime threads set to 0 ("one per core") are divided among the workers, so
  that workers x threads stays within the CPUs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

from keel import log_output
from keel.cpus import cpu_quota, usable_cpus
from keel.registry import Registry
from keel.settings import MAX_WORKERS, Settings
from keel.web.addresses import bind_listeners, check_grpc_port
from keel.web.run_dir import RunDir, WorkerSpec
from keel.web.server import serve

log = logging.getLogger("keel.web")

# The pause before a restart: doubled for each quick exit in a row, up to the most.
FIRST_BACKOFF_S = 0.5
MOST_BACKOFF_S = 30.0
# A worker that ran this long before it exited was not crash-looping: its next pause is short.
STEADY_S = 30.0
# How long past the grace period a worker may take to exit before it is killed.
STOP_MARGIN_S = 10.0
_POLL_S = 0.1


def worker_count(setting: int | str) -> int:
    """The number of workers ``server.workers`` asks for ('auto': the usable CPUs)."""
    return min(usable_cpus(), MAX_WORKERS) if setting == "auto" else int(setting)


def oversubscribed(count: int, cpus: int) -> str | None:
    """What to warn of when ``count`` workers exceed the ``cpus`` this container may use.

    Allowed (a model that waits on its runtime's threads may gain from a spare worker),
    but each worker is a core's worth of Python: past the CPUs they take turns on them,
    which costs latency and memory and adds no throughput.
    """
    if count <= cpus:
        return None
    return (
        f"{count} workers on the {cpus} CPU{'s' if cpus != 1 else ''} this container may use: "
        "the workers beyond them take turns on the same cores, adding memory and latency, "
        "not throughput; --workers auto runs one per CPU"
    )


@dataclass
class _Slot:
    """One worker's place: restarted into the same index, so its ``worker`` label holds."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Runs ``count`` workers serving ``refs`` until a stop signal; ``run`` blocks."""

    def __init__(self, refs: Sequence[str], settings: Settings, count: int) -> None:
        self.refs = list(refs)
        self.settings = divide_threads(settings, count)
        self.count = count
        self._slots = [_Slot(k) for k in range(count)]
        self._signals = 0

    def run(self) -> None:
        server = self.settings.server
        if (warning := oversubscribed(self.count, usable_cpus())) is not None:
            log.warning("%s", warning)
        if server.grpc_port:
            check_grpc_port(server.host, server.grpc_port)
        listeners = bind_listeners(server.host, server.port)
        run_dir = RunDir.create()
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            run_dir.write_spec(
                WorkerSpec(
                    workers=self.count,
                    refs=self.refs,
                    settings=settings_json(self.settings),
                    listener_fds=[listener.fileno() for listener in listeners],
                    supervisor_pid=os.getpid(),
                )
            )
            run_dir.write_restarts([0] * self.count)
            host, port = listeners[0].getsockname()[:2]
            grpc = f" and gRPC port {server.grpc_port}" if server.grpc_port else ""
            log.info(
                "keel supervising %d workers on http://%s:%d%s (their shared folder: %s)",
                self.count,
                host,
                port,
                grpc,
                run_dir.path,
            )
            for slot in self._slots:
                self._start(slot, run_dir, listeners)
            while not self._signals:
                self._watch(run_dir, listeners)
                time.sleep(_POLL_S)
            for listener in listeners:
                listener.close()
            self._stop_all(server.grace_period_s)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for listener in listeners:
                listener.close()
            for slot in self._slots:
                if slot.process is not None and slot.process.poll() is None:
                    slot.process.kill()
                    slot.process.wait()
            run_dir.remove()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("%s: stopping the workers", signal.Signals(signum).name)
            return
        log.warning("second %s: the workers stop without waiting", signal.Signals(signum).name)
        self._signal_all(signal.SIGTERM)

    def _start(self, slot: _Slot, run_dir: RunDir, listeners: list[socket.socket]) -> None:
        command = [sys.executable, "-m", "keel.web.worker", str(run_dir.path), str(slot.index)]
        slot.started_at = time.monotonic()
        slot.restart_at = None
        try:
            # A process group of its own: Ctrl-C in a terminal reaches the supervisor
            # alone, which passes it on as SIGTERM, and never a worker still importing.
            slot.process = subprocess.Popen(
                command, pass_fds=[listener.fileno() for listener in listeners], process_group=0
            )
        except OSError as exc:
            # Out of processes or memory for a moment: tried again after the usual pause.
            slot.quick_exits += 1
            slot.restart_at = time.monotonic() + _pause(slot.quick_exits)
            log.error("cannot start worker %d (%s); trying again", slot.index, exc)
            return
        log.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    def _watch(self, run_dir: RunDir, listeners: list[socket.socket]) -> None:
        """Note each worker that exited and start again each one whose pause is over."""
        now = time.monotonic()
        for slot in self._slots:
            process = slot.process
            if process is not None and (code := process.poll()) is not None:
                run_dir.mark_ready(slot.index, False)
                slot.process = None
                lived = now - slot.started_at
                slot.quick_exits = slot.quick_exits + 1 if lived < STEADY_S else 1
                pause = _pause(slot.quick_exits)
                slot.restart_at = now + pause
                log.warning(
                    "worker %d (pid %d) %s after %.1f s; starting it again in %.1f s",
                    slot.index,
                    process.pid,
                    _how_it_ended(code),
                    lived,
                    pause,
                )
            if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                slot.restarts += 1
                run_dir.write_restarts([s.restarts for s in self._slots])
                self._start(slot, run_dir, listeners)

    def _signal_all(self, signum: int) -> None:
        for slot in self._slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    def _stop_all(self, grace_s: float) -> None:
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace_s + STOP_MARGIN_S
        running = [s.process for s in self._slots if s.process is not None]
        while running and time.monotonic() < deadline:
            running = [p for p in running if p.poll() is None]
            time.sleep(_POLL_S)
        for process in running:
            log.warning("worker pid %d did not stop in time; killing it", process.pid)
            process.kill()
            process.wait()
        log.info("every worker has stopped")


def _pause(quick_exits: int) -> float:
    """Seconds before a worker is started again after this many quick exits in a row."""
    return float(min(MOST_BACKOFF_S, FIRST_BACKOFF_S * 2.0 ** (quick_exits - 1)))


def _how_it_ended(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def divide_threads(settings: Settings, count: int) -> Settings:
    """``settings`` with each thread count of 0 ("one per core") made a worker's share."""
    share = max(1, usable_cpus() // count)
    runtime, server = settings.runtime, settings.server
    update: dict[str, Any] = {}
    if runtime.intra_op_threads == 0:
        update["runtime"] = runtime.model_copy(update={"intra_op_threads": share})
    if server.inference_threads == 0:
        update["server"] = server.model_copy(update={"inference_threads": share})
    return settings.model_copy(update=update) if update else settings


def settings_json(settings: Settings) -> dict[str, Any]:
    """``settings`` as JSON a worker reads back, the admin token included."""
    data = settings.model_dump(mode="json")
    if settings.admin_token is not None:
        data["admin_token"] = settings.admin_token.get_secret_value()
    return data


def serve_workers(refs: Sequence[str], settings: Settings, registry: Registry) -> None:
    """Serve ``refs`` from ``server.workers`` workers until a stop signal; blocks.

    One worker is one process, with no supervisor: ``keel.web.server.serve``.
    """
    count = worker_count(settings.server.workers)
    if count == 1:
        serve(refs, settings, registry)
        return
    log_output.configure(settings.log, "supervisor")
    if settings.server.workers == "auto":
        quota = cpu_quota()
        log.info(
            "server.workers is auto: %d workers, from %s",
            count,
            "every CPU this process may run on (no CPU quota)"
            if quota is None
            else f"the CPU quota of {quota:g} CPUs",
        )
    Supervisor(refs, settings, count).run()
