"""The server's side of the prediction log: buffered on the event loop, written in batches.

Requests hand records to ``PredictionLog.add``, which only appends to a bounded
buffer. A flusher task sends them to the store in batches on one thread of its
own, so neither the event loop nor the model threads ever wait on the log's I/O.
A store that fails costs the batch it was given, never the server's memory: the
buffer is bounded, failed batches are dropped and counted, and the next flush
tries again, so the log recovers by itself when the store comes back.

The buffer holds at most what the store is measured to take in ``max_pending_s``
(and never more than ``max_pending``): a log that cannot keep up drops new records
and counts them, instead of falling minutes behind, and a SIGKILL loses no more
than that much writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from keel.background import lower_this_thread
from keel.errors import LogStoreUnavailable
from keel.logstore.records import CandidateInfo, PredictionRecord
from keel.logstore.store import LogStore
from keel.settings import LogStoreSettings

log = logging.getLogger("keel.logstore")

# A handful of candidates start per server; their facts are kept and retried until
# written, since the report needs them, but a runaway caller cannot grow this past it.
MAX_PENDING_CANDIDATES = 256
_CANCELLED = LogStoreUnavailable("the prediction log's write was cancelled before it ended")
# The buffer holds settings.max_pending_s of writing, at the rate the store took the last
# full batches: what a SIGKILL can lose, and how far behind the log may fall before it
# drops (and counts) new records. Wall time under the load of the moment is measured, so
# the bound holds on any store and host. Measured on a 2-core host, SQLite, breast-cancer
# records with inputs: 34,500 records/s with the CPU idle, 17,500 with both cores busy.
# How fast a new measurement moves the drain rate: smooths one slow batch (a WAL
# checkpoint) without lagging a store that really slowed down by more than a few batches.
_RATE_WEIGHT = 0.3
# The writer's scheduling priority: normal, unlike shadow candidates (nice 19). Starved
# at nice 19 it wrote 259 records/s on a saturated 2-core host whatever the store could
# do (a server logging 4,400 requests/s was 46,600 records behind after 12 s). At nice 0
# it takes the CPU its records cost, about 29 us each: at saturation with every request
# logged, about 15 % fewer requests served (docs/reliability.md has the runs).
WRITER_NICENESS = 0


class PredictionLog:
    """Buffers prediction records and writes them to a ``LogStore`` in batches.

    Counters for ``/metrics``, read on the event loop: ``written`` records,
    ``dropped`` records by reason (``queue_full``: the buffer was at
    ``pending_limit``; ``store_error``: the store failed the batch, or could not take
    it before shutdown; ``closed``: added after ``close``), ``write_failures``
    (failed store calls), ``pending`` and ``healthy`` (the last write succeeded).
    """

    def __init__(self, store: LogStore, settings: LogStoreSettings) -> None:
        self.store = store
        self.settings = settings
        self.written = 0
        self.dropped: dict[str, int] = {"queue_full": 0, "store_error": 0, "closed": 0}
        self.write_failures = 0
        self.healthy = True
        self._records: deque[PredictionRecord] = deque()
        # Records the store took per second in recent full batches; None before the first.
        self._drain_rate: float | None = None
        self._pending_limit = settings.max_pending
        self._candidates: deque[CandidateInfo] = deque()
        self._in_flight = 0
        # Set when close() gives up waiting: the batch still on the thread is then
        # already counted as dropped, whatever becomes of it.
        self._abandoned = False
        self._dropped_before_outage = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._flusher: asyncio.Task[None] | None = None
        # One thread: batches reach the store in order, and a slow store holds up
        # only the log, never the threads that load versions or run models.
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="keel-log-writer",
            initializer=lower_this_thread,
            initargs=(WRITER_NICENESS,),
        )

    @property
    def pending(self) -> int:
        """Records accepted and not yet written or dropped, the batch being written included."""
        return len(self._records) + self._in_flight

    @property
    def pending_limit(self) -> int:
        """Most records held unwritten now: ``max_pending_s`` of writing, within max_pending."""
        return self._pending_limit

    async def start(self) -> None:
        """Start the flusher task; records added before this are written by its first flush."""
        if self._flusher is None and not self._closed:
            self._flusher = asyncio.create_task(self._flush_until_closed(), name="prediction-log")

    def add(self, record: PredictionRecord) -> None:
        """Queue ``record`` for writing; drops (and counts) it when the buffer is full.

        Call on the event loop. Constant time; never raises, never waits.
        """
        if self._closed:
            self.dropped["closed"] += 1
        elif self.pending >= self._pending_limit:
            self.dropped["queue_full"] += 1
        else:
            self._records.append(record)
            # While the store is down the flusher keeps to its interval: waking it
            # for every full batch would hammer a store that is failing anyway.
            if self.healthy and len(self._records) >= self.settings.batch_records:
                self._wake.set()

    def add_candidate(self, info: CandidateInfo) -> None:
        """Queue the facts of a started candidate; kept and retried until the store takes them."""
        if self._closed or len(self._candidates) >= MAX_PENDING_CANDIDATES:
            log.warning(
                "prediction log: candidate %s of %s not recorded: the log is %s",
                info.candidate_version,
                info.model,
                "closed" if self._closed else "holding too many unwritten candidates",
            )
            return
        self._candidates.append(info)
        self._wake.set()

    async def close(self) -> None:
        """Write what is pending (within ``close_timeout_s``), then close the store.

        Records that could not be written in time are counted as dropped.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        flusher = self._flusher
        if flusher is None or flusher.done():  # never started, or cancelled by its owner
            flusher = asyncio.create_task(self._write_pending())
        done, _ = await asyncio.wait({flusher}, timeout=self.settings.close_timeout_s)
        if not done:
            flusher.cancel()
            self._abandoned = True
            self.dropped["store_error"] += self._in_flight
            self._in_flight = 0
            log.warning(
                "prediction log %s: writes did not finish within %.1f s of shutdown",
                self.store.url,
                self.settings.close_timeout_s,
            )
        if self._records:
            log.warning(
                "prediction log %s: %d records not written before shutdown",
                self.store.url,
                len(self._records),
            )
            self.dropped["store_error"] += len(self._records)
            self._records.clear()
        # Queued behind any write still running, on the thread that owns the store.
        closing = asyncio.get_running_loop().run_in_executor(self._executor, self._close_store)
        if done:
            await closing
        self._executor.shutdown(wait=False)

    async def _flush_until_closed(self) -> None:
        while not self._closed:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_interval_s)
                woken = True
            self._wake.clear()
            # Woken early by a full batch, write full batches; the rest waits for the
            # interval, so that a busy server writes few, large transactions.
            await self._write_pending(full_batches_only=woken and not self._closed)
        await self._write_pending()  # what was added while the last round ran

    async def _write_pending(self, full_batches_only: bool = False) -> None:
        """Write queued candidates, then the records queued now, until a write fails.

        Records added meanwhile wait for the next round: under load they form full
        batches instead of trickling out a few at a time.
        """
        if self._candidates and not await self._write_candidates():
            return
        left = len(self._records)
        if full_batches_only:
            left -= left % self.settings.batch_records
        while left > 0:
            size = min(self.settings.batch_records, left)
            left -= size
            if not await self._write_batch(size):
                return

    async def _write_batch(self, size: int) -> bool:
        batch = [self._records.popleft() for _ in range(size)]
        self._in_flight += size
        outcome = asyncio.get_running_loop().run_in_executor(
            self._executor, self._write_records, batch
        )
        # Settled by a callback so that the outcome counts even if the flusher is cancelled.
        outcome.add_done_callback(lambda done: self._settle_batch(size, done))
        error, _ = await asyncio.shield(outcome)
        return error is None

    async def _write_candidates(self) -> bool:
        infos = list(self._candidates)
        self._candidates.clear()
        outcome = asyncio.get_running_loop().run_in_executor(
            self._executor, self._record_candidates, infos
        )
        outcome.add_done_callback(lambda done: self._settle_candidates(infos, done))
        _, error = await asyncio.shield(outcome)
        return error is None

    def _write_records(self, batch: Sequence[PredictionRecord]) -> tuple[Exception | None, float]:
        """The store's error (None when it took the batch) and the seconds it took."""
        # Runs on the log's thread; the outcome is settled on the loop. The time is the
        # wall time, waits for the CPU included: what the store drains under this load.
        started = time.perf_counter()
        try:
            self.store.write(batch, store_inputs=self.settings.store_inputs)
        except Exception as error:  # noqa: BLE001 - counted and logged by _settle_batch
            return error, time.perf_counter() - started
        return None, time.perf_counter() - started

    def _record_candidates(self, infos: Sequence[CandidateInfo]) -> tuple[int, Exception | None]:
        for written, info in enumerate(infos):
            try:
                self.store.record_candidate(info)
            except Exception as error:  # noqa: BLE001 - counted and logged by _settle_candidates
                return written, error
        return len(infos), None

    def _settle_batch(
        self, size: int, done: asyncio.Future[tuple[Exception | None, float]]
    ) -> None:
        if self._abandoned:
            return
        self._in_flight -= size
        error, seconds = (_CANCELLED, 0.0) if done.cancelled() else done.result()
        if error is None:
            self.written += size
            self._measure_drain(size, seconds)
            self._store_up()
        else:
            self._store_down(error)
            self.dropped["store_error"] += size

    def _settle_candidates(
        self, infos: Sequence[CandidateInfo], done: asyncio.Future[tuple[int, Exception | None]]
    ) -> None:
        written, error = (0, _CANCELLED) if done.cancelled() else done.result()
        if error is None:
            self._store_up()
            return
        # The unwritten ones go back to the front, to be retried at the next flush.
        self._candidates.extendleft(reversed(infos[written:]))
        self._store_down(error)

    def _measure_drain(self, size: int, seconds: float) -> None:
        """Update the drain rate, and the pending limit, from a batch the store took."""
        # A small batch is mostly the transaction's fixed cost, not the store's rate.
        if size * 2 < self.settings.batch_records or seconds <= 0:
            return
        rate = size / seconds
        if self._drain_rate is not None:
            rate = self._drain_rate + _RATE_WEIGHT * (rate - self._drain_rate)
        self._drain_rate = rate
        # Never under one batch: a full batch must always fit, or nothing is ever measured.
        derived = max(self.settings.batch_records, int(rate * self.settings.max_pending_s))
        self._pending_limit = min(self.settings.max_pending, derived)

    def _store_down(self, error: Exception) -> None:
        self.write_failures += 1
        if not self.healthy:
            return
        self.healthy = False
        self._dropped_before_outage = sum(self.dropped.values())
        if isinstance(error, LogStoreUnavailable):
            log.warning("%s; dropping records until it is back", error)
        else:
            log.error(
                "prediction log %s failed unexpectedly; dropping records until a write succeeds",
                self.store.url,
                exc_info=error,
            )

    def _store_up(self) -> None:
        if self.healthy:
            return
        self.healthy = True
        log.info(
            "prediction log %s is back; %d records were dropped while it was down",
            self.store.url,
            sum(self.dropped.values()) - self._dropped_before_outage,
        )

    def _close_store(self) -> None:
        try:
            self.store.close()
        except Exception:  # shutdown goes on; the log says why
            log.exception("prediction log %s did not close cleanly", self.store.url)
