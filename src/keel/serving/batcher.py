"""Dynamic batching for one model version: many callers' rows, one runtime call.

Scheduling is done by one dispatcher task per batcher, which turns the queue into
batches by three rules (an ``inline`` model has no dispatcher: see below):

* Idle model (no batch in flight): dispatch whatever is queued at once. A lone
  request never waits ``max_queue_delay_ms`` for company it will not get, so under
  light load latency is one model run.
* Some batches in flight, a slot free: wait at most ``max_queue_delay_ms`` for the
  batch to fill (until ``max_batch_size`` rows are queued, or the model goes idle),
  then dispatch. The model is busy anyway, so a short wait buys a fuller batch.
* ``max_batches_in_flight`` running: requests queue until a slot frees, then up to
  ``max_batch_size`` rows go at once. Under load batches gather by themselves from
  what arrived during the previous run; no timer is involved.

Batches are cut first-in first-out from the head of the queue: consecutive requests
with the same input names, trailing shapes and dtypes, up to ``max_batch_size`` rows;
the first request that does not fit starts the next batch. A request larger than
``max_batch_size`` is queued as chunks whose results are put back together in order.
Concatenating, running and splitting happen on the version's own threads (one per
batch in flight, so a slow model never takes a thread another version needs; or on
the executor the batcher is given),
except for models so fast that the hand-off to a thread would cost more than the call
(``inline``): those run on the loop, which they hold for less time than parsing a
request body takes. An inline batch never waits for a slot or for company: it runs in
the submitting request's own step when keel's HTTP server has no other request read and
not yet started (``Arrivals``), since none could join it; otherwise from a loop callback
queued behind those requests, so the ones read in the same pass share a batch. One
inline batch that uses more than ``inline_bound_s`` of the loop thread's CPU time moves
the version to its threads for good: the loop must not meet that input twice.

No caller gets a float output holding NaN or an infinity: that is the model's failure
(NonFiniteOutput), judged once for the whole batch and, only when the batch holds one,
caller by caller, so that the callers whose rows are finite are answered.

A batch the model fails on is run again in halves, down to the requests that fail on
their own: one request's rows (an id past a lookup table) must not fail the requests
that happened to share its batch. A batch with one bad request costs about two
batches' work and ``2 log2(n)`` extra calls; only the requests that fail alone fail.

Per request the loop does a shape check, one future and two deque appends (the
queue, and the ``DeadlineWatch`` whose one timer serves every deadline); the
dispatcher (or inline callback) and the executor callback work per batch.
Deadlines and cancellation withdraw a queued request lazily (a flag, and the
queue is compacted when dead entries pile up), so neither costs a scan of the queue.
A deadline holds wherever the request is: queued, running in a thread (its caller gets
504 when the deadline passes, the run's rows are discarded) or answered by a run that
ended after it (504, never a late 200).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import itertools
import logging
import math
import time
import typing
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from keel import tracing
from keel.errors import (
    DeadlineExceeded,
    KeelError,
    NonFiniteOutput,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    RuntimeFailure,
)
from keel.serving.arrivals import Arrivals
from keel.serving.deadline_watch import DeadlineWatch
from keel.serving.gc_clock import install_gc_clock
from keel.serving.run_estimate import RunTimeEstimate
from keel.settings import BatchingSettings

log = logging.getLogger("keel.serving")

Tensors = dict[str, npt.NDArray[Any]]
RunBatch = Callable[[Tensors], Tensors]
"""Runs the model on one batch; blocking, so it is called in an executor (``Runtime.predict``)."""
BatchObserver = Callable[[int, list[float], float], None]
"""Told of every finished batch on the loop: rows, each request's queue wait, run seconds."""

InputKey = tuple[tuple[str, tuple[int, ...], np.dtype[Any]], ...]
# Per request of a batch: its rows of every output, or the error its rows alone caused.
Answers = list[Tensors | Exception]
Outcome = concurrent.futures.Future[Answers]

# Up to this many elements an output is summed in Python to find a NaN or an infinity,
# which costs about 0.2 us for a row of probabilities against 1.5 us for numpy's isfinite
# and all (measured).
_SUMMED_IN_PYTHON = 64
# Withdrawn requests stay in the queue until the dispatcher reaches them; past this
# many (and half the queue) the queue is rebuilt so a stuck model cannot make it grow.
_COMPACT_AFTER = 64
# An inline run may use this many times the time warm-up promised
# (batching.inline_below_us), in CPU time of the loop's thread, before the version
# leaves the loop for good. Warm-up took the fastest of three full batches; a batch of
# a model whose input shapes bound its cost costs no more than that, bar cache misses
# and a garbage collection, so 4x is far above what such a model does and far below
# what freezes a server (the probes allow 0.5 s). A false move costs only the thread
# hand-off (tens of microseconds a batch); a missed one lets the next such input
# freeze every model.
INLINE_BOUND_FACTOR = 4
# Never below this: the first run on the loop's thread sets up ONNX Runtime's
# per-thread state (measured up to 6.8x a warm call), and must not move a model
# warmed at a very low inline_below_us.
INLINE_BOUND_FLOOR_S = 0.001


class _Wait(enum.Enum):
    """What the dispatcher is asleep for, so that only a relevant event wakes it."""

    NOTHING = enum.auto()
    WORK = enum.auto()
    SLOT = enum.auto()
    FILL = enum.auto()


class _Request:
    """Rows of one caller (or one chunk of a large caller's rows) on their way through a batch."""

    __slots__ = ("deadline", "future", "inputs", "key", "queued", "queued_at", "rows", "span")

    def __init__(
        self,
        inputs: Tensors,
        rows: int,
        key: InputKey,
        future: asyncio.Future[Tensors],
        queued_at: float,
        deadline: float,
        span: Any = None,
    ) -> None:
        self.inputs = inputs
        self.rows = rows
        self.key = key
        self.future = future
        self.queued = True
        # time.perf_counter(), as every duration the batcher measures: loop.time() is
        # uvloop's millisecond tick, which does not move at all during a run on the loop.
        self.queued_at = queued_at
        self.deadline = deadline
        # The caller's span when its request is traced (keel.tracing), else None.
        self.span = span


class _RunClock:
    """The model calls of a traced batch, timed: its ``keel.model_run`` span.

    Only a batch with a traced request is run through one: the rest pay nothing.
    """

    __slots__ = ("calls", "ended", "run", "started")

    def __init__(self, run: RunBatch) -> None:
        self.run = run
        self.calls = 0
        self.started = self.ended = 0.0

    def __call__(self, inputs: Tensors) -> Tensors:
        started = time.perf_counter()
        if not self.calls:
            self.started = started
        self.calls += 1
        try:
            return self.run(inputs)
        finally:
            self.ended = time.perf_counter()


class Batcher:
    """Merges concurrent requests to one model version into batched runtime calls.

    ``batches_run``, ``batches_failed``, ``rows_run``, ``requests_shed`` and
    ``inline_demotions`` count since construction, for metrics; ``queued_rows`` and
    ``in_flight`` are gauges. Without an ``executor`` the batcher runs the model on
    threads of its own, ``max_batches_in_flight`` of them, and stops them on close.
    """

    def __init__(
        self,
        run: RunBatch,
        settings: BatchingSettings,
        executor: concurrent.futures.Executor | None = None,
        name: str = "",
        inline: bool = False,
        arrivals: Arrivals | None = None,
    ) -> None:
        self.name = name
        # What a batch's spans say of the model (keel.tracing): its name and version.
        self.trace_attributes: dict[str, str] = {"keel.model.name": name}
        # Set once the version's warm-up batches are through, so metrics show real traffic.
        self.observer: BatchObserver | None = None
        # A model whose whole batch runs faster than a hand-off to a worker thread
        # (measured: hundreds of microseconds of queue and GIL traffic on a busy
        # box), and whose input shapes bound that cost, is called on the loop; the
        # server decides from the runtime and warm-up timings. True until a run
        # takes longer than inline_bound_s; never true again after.
        self.inline = inline
        self.inline_bound_s = max(
            INLINE_BOUND_FACTOR * settings.inline_below_us / 1e6, INLINE_BOUND_FLOOR_S
        )
        self.inline_demotions = 0
        self._cpu_mark_every_s = self.inline_bound_s / 2
        self._gc_clock = install_gc_clock()
        self._cpu_marked_at = -math.inf
        self._cpu_mark = 0.0
        # Without the HTTP server's count (in-process callers), an inline batch always
        # waits for the callback, in case other requests are about to be submitted.
        self._arrivals = arrivals
        self._label = f"model {name}" if name else "model"
        self._run = run
        # Threads of this version's own, one per batch it may have in flight, rather than
        # a cap on a pool shared with other versions: a batch never waits for a thread,
        # so a version whose runs take seconds delays only its own requests. Started
        # on first use: an inline model never starts one unless it leaves the loop.
        self._own_executor: concurrent.futures.ThreadPoolExecutor | None = None
        if executor is None:
            executor = self._own_executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=settings.max_batches_in_flight,
                thread_name_prefix=f"keel-run {name}" if name else "keel-run",
            )
        self._executor = executor
        self._max_rows = settings.max_batch_size
        self._max_queued = settings.max_queue_size
        self._max_in_flight = settings.max_batches_in_flight
        self._delay_s = settings.max_queue_delay_ms / 1000
        self._queue: deque[_Request] = deque()
        self._queued_rows = 0
        self._withdrawn = 0
        self._running: dict[Outcome, tuple[list[_Request], float, _RunClock | None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: DeadlineWatch  # with the loop, in _start
        self._dispatcher: asyncio.Task[None] | None = None
        self._inline_due = False
        self._waiting = _Wait.NOTHING
        self._wakeup: asyncio.Future[None] | None = None
        self._refusal: str | None = None
        self._drained = asyncio.Event()
        self._run_time = RunTimeEstimate()
        self.batches_run = 0
        self.batches_failed = 0
        self.rows_run = 0
        self.requests_shed = 0

    @property
    def queued_rows(self) -> int:
        """Rows waiting for a batch."""
        return self._queued_rows

    @property
    def in_flight(self) -> int:
        """Batches the model is running now."""
        return len(self._running)

    async def submit(
        self, inputs: Tensors, deadline: float | None = None, span: Any = None
    ) -> Tensors:
        """Run ``inputs`` in a batch and return this request's rows of every output.

        ``deadline`` is an absolute ``loop.time()``; past it the request gets
        DeadlineExceeded whether it is still queued or already running. ``span``: the
        request's, when it is traced; its queue wait is added to it, linked to the batch.
        """
        if self._refusal is not None:
            raise NotReady(self._refusal)
        rows, key = _describe(inputs)
        loop = self._loop or self._start()
        if deadline is not None:
            left_s = deadline - loop.time()
            if left_s <= 0:
                raise DeadlineExceeded(
                    f"{self._label}: the deadline passed before the request queued"
                )
            # Answered at once rather than run for nothing. The median alone first: it
            # is one comparison, and the decay only matters when it would refuse.
            if left_s < self._run_time.median and left_s < (
                expected := self._run_time.expected(time.perf_counter())
            ):
                raise DeadlineExceeded(
                    f"{self._label}: the deadline is {left_s * 1e3:.3f} ms away, sooner than "
                    f"one model run takes (about {expected * 1e3:.3f} ms)"
                )
        if rows > self._max_queued:
            # No retry can make this fit: it is the request, not the load.
            raise PayloadTooLarge(
                f"{self._label}: {rows} rows in one request; at most {self._max_queued} can be "
                "queued (batching.max_queue_size): split the request"
            )
        if self._queued_rows + rows > self._max_queued:
            self.requests_shed += 1
            raise Overloaded(self._overload_message(), retry_after_s=self._retry_after(rows))
        due = math.inf if deadline is None else deadline
        if rows > self._max_rows:
            return await self._submit_chunks(loop, inputs, rows, key, due, span)
        request = _Request(inputs, rows, key, loop.create_future(), time.perf_counter(), due, span)
        self._enqueue(request)
        # The watch fails the future, rather than asyncio.timeout_at: that leaves the
        # caller's task uncancelled and costs far less per request. An inline batch
        # that ran at once has answered already.
        timer = (
            None if deadline is None or request.future.done() else self._deadlines.watch(request)
        )
        try:
            return await request.future
        finally:
            if timer is not None:
                timer.cancel()
            if request.queued:
                self._withdraw(request)

    def deadline_in(self, seconds: float) -> float:
        """The time on this batcher's loop ``seconds`` from now: a deadline for ``submit``.

        Called on the loop. The batcher has its loop at hand, where
        ``asyncio.get_running_loop()`` costs a system call (getpid) on Python 3.11.
        """
        loop = self._loop or self._start()
        return loop.time() + seconds

    async def close(self, timeout: float) -> None:
        """Refuse new requests, let queued and running ones finish (up to ``timeout``), stop."""
        if self._refusal is None:
            self._refusal = f"{self._label} is shutting down"
        # Skip any wait for company: from now on the queue drains as fast as the model allows.
        self._wake()
        self._check_drained()
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            log.warning(
                "%s: %d queued rows and %d running batches were cut off after %.1f s",
                self._label,
                self._queued_rows,
                len(self._running),
                timeout,
            )
        finally:
            self._abandon(NotReady(f"{self._label} shut down before the prediction was ready"))
            if self._loop is not None:
                self._deadlines.close()
            if self._dispatcher is not None:
                self._dispatcher.cancel()
                # The dispatcher only ever awaits its own wake-up future, so it ends at once.
                await asyncio.wait([self._dispatcher], timeout=1.0)
            if self._own_executor is not None:
                # A run still going ends on its own; its callers were answered above.
                self._own_executor.shutdown(wait=False, cancel_futures=True)

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._deadlines = DeadlineWatch(loop, self._expire)
        if self.inline:
            # No dispatcher task: an inline batch never waits for a slot or for company,
            # so a plain callback per batch does its job without a task's wake-ups.
            return loop
        self._start_dispatcher(loop)
        return loop

    def _start_dispatcher(self, loop: asyncio.AbstractEventLoop) -> None:
        self._dispatcher = loop.create_task(self._dispatch_forever(), name=f"batcher {self.name}")
        self._dispatcher.add_done_callback(self._dispatcher_ended)

    async def _submit_chunks(
        self,
        loop: asyncio.AbstractEventLoop,
        inputs: Tensors,
        rows: int,
        key: InputKey,
        due: float,
        span: Any,
    ) -> Tensors:
        step = self._max_rows
        now = time.perf_counter()
        chunks = [
            _Request(
                {name: array[start : start + step] for name, array in inputs.items()},
                min(step, rows - start),
                key,
                loop.create_future(),
                now,
                due,
                span,
            )
            for start in range(0, rows, step)
        ]
        timers = []
        for chunk in chunks:
            self._enqueue(chunk)
            if due != math.inf and (timer := self._deadlines.watch(chunk)) is not None:
                timers.append(timer)
        try:
            parts = await asyncio.gather(*(chunk.future for chunk in chunks))
        finally:
            for timer in timers:
                timer.cancel()
            for chunk in chunks:
                if chunk.queued:
                    self._withdraw(chunk)
                # A no-op for finished chunks; a running chunk's rows are discarded.
                chunk.future.cancel()
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _enqueue(self, request: _Request) -> None:
        self._queue.append(request)
        self._queued_rows += request.rows
        if self.inline:
            if self._arrivals is None or self._arrivals.expected():
                self._schedule_inline()
            else:
                self._run_next_inline()
        elif self._waiting is _Wait.WORK or (
            self._waiting is _Wait.FILL and self._queued_rows >= self._max_rows
        ):
            self._wake()

    def _withdraw(self, request: _Request) -> None:
        """Take a cancelled or expired request out of the queue's count; its entry dies lazily."""
        request.queued = False
        self._queued_rows -= request.rows
        self._withdrawn += 1
        if self._withdrawn > _COMPACT_AFTER and 2 * self._withdrawn > len(self._queue):
            self._queue = deque(entry for entry in self._queue if entry.queued)
            self._withdrawn = 0
        self._check_drained()

    def _schedule_inline(self) -> None:
        """Run the queue's next batch once the requests already parsed this loop pass are in."""
        if not self._inline_due:
            assert self._loop is not None
            self._inline_due = True
            self._loop.call_soon(self._dispatch_inline)

    def _dispatch_inline(self) -> None:
        self._inline_due = False
        # Queued before the version left the loop: the dispatcher has them now.
        if self.inline:
            self._run_next_inline()

    def _run_next_inline(self) -> None:
        batch = self._take_batch()
        try:
            if batch:
                self._run_inline(batch)
        except Exception as error:  # noqa: BLE001 - a bug here must not strand the callers
            self._fail(batch, self._stopped(error))
            return
        # One batch per callback, so sockets are read between the batches of a long queue.
        if self._queued_rows and self.inline:
            self._schedule_inline()

    async def _dispatch_forever(self) -> None:
        assert self._loop is not None
        while True:
            if self._queued_rows == 0:
                await self._sleep(_Wait.WORK)
                continue
            if len(self._running) >= self._max_in_flight:
                await self._sleep(_Wait.SLOT)
                continue
            if (
                self._running
                and self._refusal is None
                and self._delay_s > 0
                and self._queued_rows < self._max_rows
            ):
                await self._sleep(_Wait.FILL, self._loop.time() + self._delay_s)
            batch = self._take_batch()
            if batch:
                self._launch(batch)

    async def _sleep(self, reason: _Wait, until: float | None = None) -> None:
        assert self._loop is not None
        self._wakeup = self._loop.create_future()
        self._waiting = reason
        timer = self._loop.call_at(until, self._wake) if until is not None else None
        try:
            await self._wakeup
        finally:
            self._waiting = _Wait.NOTHING
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _take_batch(self) -> list[_Request]:
        queue = self._queue
        batch: list[_Request] = []
        rows = 0
        while queue:
            request = queue[0]
            if not request.queued:
                queue.popleft()
                self._withdrawn -= 1
                continue
            if batch and (request.key != batch[0].key or rows + request.rows > self._max_rows):
                break
            queue.popleft()
            request.queued = False
            rows += request.rows
            batch.append(request)
        self._queued_rows -= rows
        return batch

    def _launch(self, batch: list[_Request]) -> None:
        assert self._loop is not None
        parts = [request.inputs for request in batch]
        counts = [request.rows for request in batch]
        clock = _clock_for(self._run, batch)
        run = self._run if clock is None else clock
        try:
            future = self._executor.submit(_run_batch, run, parts, counts, self.name)
        except RuntimeError as exc:  # the executor was shut down under us
            self._fail(batch, RuntimeFailure(f"{self._label}: cannot run the model: {exc}"))
            return
        self._running[future] = (batch, time.perf_counter(), clock)
        # Not loop.run_in_executor: its asyncio wrapper future costs one more loop pass per
        # batch before _finish runs, measured at about 20 us of a lone request's latency.
        future.add_done_callback(self._hand_back)

    def _hand_back(self, future: Outcome) -> None:
        """Schedule _finish on the loop; runs in the worker thread that ran the batch."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._finish, future)
        except RuntimeError:
            # The loop is closed: close() gave up on this run and failed its callers already.
            log.debug("%s: a batch finished after its event loop closed", self._label)

    def _run_inline(self, batch: list[_Request]) -> None:
        assert self._loop is not None
        started = time.perf_counter()
        # Judged on the loop thread's CPU time, not the clock's: on a saturated box or
        # under a container's CPU quota the OS takes the thread away for milliseconds at
        # a time, mid-run too, and that is no fault of the model. A CPU clock read is a
        # system call (1.4 us median on this VM, now and then milliseconds: measured),
        # too dear for every batch, so the CPU clock is marked at most every half bound,
        # and read again only when the clock says the bound may be passed. The run used
        # at least the CPU time since the mark less the time between the mark and the
        # run's start, since a thread never gets more CPU time than the time that
        # passes; a run is missed only if it stays under 1.5x the bound.
        gc_started = self._gc_clock.seconds
        if started - self._cpu_marked_at > self._cpu_mark_every_s:
            self._cpu_marked_at = started
            self._cpu_mark = time.thread_time()
        clock = _clock_for(self._run, batch)
        answers = _run_batch(
            self._run if clock is None else clock,
            [r.inputs for r in batch],
            [r.rows for r in batch],
            self.name,
        )
        cpu_s = 0.0
        if time.perf_counter() - started > self.inline_bound_s:
            cpu_s = (
                time.thread_time()
                - self._cpu_mark
                - (started - self._cpu_marked_at)
                # A garbage collection during the run is not the model's doing.
                - (self._gc_clock.seconds - gc_started)
            )
        self._settle(batch, started, answers, clock)
        if cpu_s > self.inline_bound_s and self.inline:
            self._leave_loop(sum(r.rows for r in batch), cpu_s)

    def _leave_loop(self, rows: int, run_s: float) -> None:
        """Move the version to its threads for good: one of its runs held the loop too long."""
        assert self._loop is not None
        self.inline = False
        self.inline_demotions += 1
        log.warning(
            "%s now runs on worker threads for good: a batch of %d rows took at least %.1f ms of "
            "the event loop's CPU time (garbage collection not counted), over its bound of "
            "%.1f ms (%dx "
            "batching.inline_below_us, at least %.0f ms)",
            self._label,
            rows,
            run_s * 1e3,
            self.inline_bound_s * 1e3,
            INLINE_BOUND_FACTOR,
            INLINE_BOUND_FLOOR_S * 1e3,
        )
        if self._refusal is None:
            self._start_dispatcher(self._loop)

    def _finish(self, future: Outcome) -> None:
        batch, started, clock = self._running.pop(future)
        if future.cancelled():
            self._settle(
                batch,
                started,
                RuntimeFailure(f"{self._label}: the batch was cancelled unrun"),
                clock,
            )
        elif (error := future.exception()) is not None:
            self._settle(batch, started, error, clock)
        else:
            self._settle(batch, started, future.result(), clock)
        if self._waiting is _Wait.SLOT or (self._waiting is _Wait.FILL and not self._running):
            self._wake()

    def _settle(
        self,
        batch: list[_Request],
        started: float,
        outcome: Answers | BaseException,
        clock: _RunClock | None = None,
    ) -> None:
        """Count a finished batch and give each caller its rows, or the error that is theirs."""
        assert self._loop is not None
        now = time.perf_counter()
        elapsed = now - started
        self._run_time.record(elapsed, now)
        self.batches_run += 1
        rows = sum(request.rows for request in batch)
        self.rows_run += rows
        if self.observer is not None:
            self.observer(rows, [started - request.queued_at for request in batch], elapsed)
        if clock is not None:
            _trace_batch(self.trace_attributes, batch, rows, started, now, clock, outcome)
        if isinstance(outcome, BaseException):
            self.batches_failed += 1
            self._fail(batch, outcome)
        else:
            failed = False
            for request, answer in zip(batch, outcome, strict=True):
                if isinstance(answer, Exception):
                    failed = True
                    if not request.future.done():
                        request.future.set_exception(self._caller_error(answer))
                # Done already when the caller left or its deadline passed: rows discarded.
                elif not request.future.done():
                    if request.deadline < now:
                        # A run that ended past the deadline, before the watch's timer
                        # (or inline, where no timer can fire): 504, as at the deadline.
                        self._expire(request)
                    else:
                        request.future.set_result(answer)
            if failed:
                self.batches_failed += 1
        self._deadlines.forget_answered()
        self._check_drained()

    def _fail(self, batch: list[_Request], error: BaseException) -> None:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(self._caller_error(error))

    def _caller_error(self, error: BaseException) -> KeelError:
        if isinstance(error, KeelError):
            return error
        # One wrapper per caller: a shared instance would collect every caller's traceback.
        failure = RuntimeFailure(f"{self._label} failed: {type(error).__name__}: {error}")
        failure.__cause__ = error
        return failure

    def _check_drained(self) -> None:
        if self._refusal is not None and self._queued_rows == 0 and not self._running:
            self._drained.set()

    def _abandon(self, error: KeelError) -> None:
        """Fail every request still waiting; a run still going in a thread is left to end."""
        for request in self._queue:
            if request.queued:
                request.queued = False
                if not request.future.done():
                    request.future.set_exception(error)
        self._queue.clear()
        self._queued_rows = 0
        self._withdrawn = 0
        for batch, _, _ in self._running.values():
            self._fail(batch, error)

    def _dispatcher_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:
            self._stopped(error)

    def _stopped(self, error: BaseException) -> RuntimeFailure:
        """Refuse from now on and fail every queued request; the failure they were given."""
        log.error("%s: the batcher stopped", self._label, exc_info=error)
        self._refusal = f"{self._label}: the batcher stopped after an internal error: {error}"
        failure = RuntimeFailure(self._refusal)
        self._abandon(failure)
        return failure

    def _expire(self, request: _Request) -> None:
        """The request's deadline passed: its caller gets 504 whether it is queued or running."""
        if not request.future.done():
            request.future.set_exception(
                DeadlineExceeded(f"{self._label}: the deadline passed before the prediction")
            )

    def _overload_message(self) -> str:
        return f"{self._label} is at capacity ({self._queued_rows} rows queued); retry later"

    def _retry_after(self, rows: int) -> float:
        """Seconds until the queue ahead would have drained, from recent batch durations."""
        batches = math.ceil((self._queued_rows + rows) / self._max_rows)
        waves = math.ceil(batches / self._max_in_flight)
        return float(max(1, math.ceil(waves * self._run_time.median)))


def _clock_for(run: RunBatch, batch: list[_Request]) -> _RunClock | None:
    """A clock for the model calls of ``batch`` if a request in it is traced, else None."""
    if not tracing.ON:
        return None
    return _RunClock(run) if any(request.span is not None for request in batch) else None


def _trace_batch(
    served: dict[str, str],
    batch: list[_Request],
    rows: int,
    started: float,
    ended: float,
    clock: _RunClock,
    outcome: Answers | BaseException,
) -> None:
    """The spans of a batch with traced requests in it.

    The batch is a trace of its own (it serves requests of many traces), linked to
    every traced request's span; each of those gets its queue wait, linked back to
    the batch. The model run is the batch's child.
    """
    traced = [request.span for request in batch if request.span is not None]
    span = tracing.linked_span(
        "keel.batch",
        [request_span.context for request_span in traced],
        started,
        {**served, "keel.batch.requests": len(batch), "keel.batch.rows": rows},
    )
    if span is None:
        return
    if clock.calls:
        # More than one call when the batch failed and was run again in parts.
        tracing.child_span(
            span,
            "keel.model_run",
            clock.started,
            clock.ended,
            {**served, "keel.model_run.calls": clock.calls},
        )
    batch_link = (span.context,)
    for request in batch:
        if request.span is not None:
            tracing.child_span(
                request.span,
                "keel.queue",
                request.queued_at,
                started,
                {"keel.batch.requests": len(batch), "keel.batch.rows": rows},
                batch_link,
            )
    failed = type(outcome).__name__ if isinstance(outcome, BaseException) else None
    tracing.end_span(span, ended, None, failed)


def _describe(inputs: Tensors) -> tuple[int, InputKey]:
    """Rows of a request and what it must share with batch-mates; RuntimeFailure if malformed."""
    if not inputs:
        raise RuntimeFailure("a request needs at least one input tensor")
    rows = -1
    key = []
    for name, array in inputs.items():
        if not isinstance(array, np.ndarray) or array.ndim == 0:
            raise RuntimeFailure(f"input '{name}' needs a first dimension that counts rows")
        if rows < 0:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            shapes = ", ".join(f"'{n}' {a.shape}" for n, a in inputs.items())
            raise RuntimeFailure(f"inputs disagree on the number of rows: {shapes}")
        key.append((name, array.shape[1:], array.dtype))
    if rows == 0:
        raise RuntimeFailure("a request needs at least one row")
    return rows, tuple(key)


def _run_batch(run: RunBatch, parts: list[Tensors], counts: list[int], model: str) -> Answers:
    """Run the parts as one batch; if the model fails, each half again, down to single parts.

    Runs in a thread (or inline). Returns each part's outputs, or the error that part
    caused when run alone (a non-finite output of ``model`` is one, without a rerun).
    """
    try:
        return _run_together(run, parts, counts, model)
    except Exception as error:  # noqa: BLE001 - the error goes to the part that caused it
        if len(parts) == 1:
            return [error]
    half = len(parts) // 2
    return _run_batch(run, parts[:half], counts[:half], model) + _run_batch(
        run, parts[half:], counts[half:], model
    )


def _run_together(run: RunBatch, parts: list[Tensors], counts: list[int], model: str) -> Answers:
    """Merge the parts, run the model once and split its outputs back."""
    total = sum(counts)
    if len(parts) == 1:
        inputs = parts[0]
    else:
        inputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    outputs = run(inputs)
    for name, array in outputs.items():
        if not isinstance(array, np.ndarray) or array.ndim == 0 or array.shape[0] != total:
            shape = getattr(array, "shape", type(array).__name__)
            raise RuntimeFailure(
                f"output '{name}' has shape {shape} for a batch of {total} rows; "
                "it cannot be split between the requests"
            )
    # Judged on the whole batch first: one check a batch, not one a caller.
    refusal = non_finite_refusal(model, outputs)
    if len(parts) == 1:
        return [outputs if refusal is None else refusal]
    bounds = list(itertools.accumulate(counts, initial=0))
    split = [
        {name: array[start:stop] for name, array in outputs.items()}
        for start, stop in itertools.pairwise(bounds)
    ]
    if refusal is None:
        return typing.cast(Answers, split)
    return [non_finite_refusal(model, part) or part for part in split]


def non_finite_refusal(model: str, outputs: Tensors) -> NonFiniteOutput | None:
    """The refusal of outputs of ``model`` of which a float one holds NaN or an infinity.

    No prediction may carry one: JSON has no spelling for it (orjson would write
    ``null``, a silent gap in a client's data), and a binary answer would hand the
    client a number no output kind (probability, score, regression) can mean. It
    is the model's failure, not the client's, so it is answered as one (500).
    """
    for name, array in outputs.items():
        if array.dtype.kind != "f":
            continue
        # A NaN or an infinity makes the sum non-finite; so may finite float64 values
        # whose sum overflows, which the exact check then clears.
        if array.size <= _SUMMED_IN_PYTHON and math.isfinite(sum(array.ravel().tolist())):
            continue
        if not np.isfinite(array).all():
            return NonFiniteOutput(
                f"{model} returned NaN or infinity in output {name!r}; the prediction is refused"
            )
    return None
