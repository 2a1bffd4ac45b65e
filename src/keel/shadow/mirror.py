"""Mirroring one model's live traffic to its shadow candidate, after the primary has answered.

The request path only offers a job: one random draw, and a queue append that
never waits (a full queue drops the job and counts it). Candidate calls run in
a few worker tasks under a timeout, and every outcome becomes one record in the
prediction log. A candidate that keeps timing out is paused (``pausing``): its
mirrored requests are then logged as dropped without a call. Nothing here can
raise into, or wait on, a primary request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from keel import tracing
from keel.logstore import CandidateStatus, PredictionRecord
from keel.logstore.records import Tensors
from keel.logstore.writer import PredictionLog
from keel.monitoring.metrics import LATENCY_BUCKETS, Histogram
from keel.serving.activity import RequestActivity
from keel.serving.calls import Call
from keel.serving.data_plane import Decoded
from keel.serving.served_version import ServedVersion
from keel.settings import ShadowSettings
from keel.shadow.candidates import Candidate
from keel.shadow.live_comparison import LiveComparison
from keel.shadow.pausing import TimeoutPausing
from keel.span_records import CLIENT, INTERNAL

log = logging.getLogger("keel.shadow")

# Longest a mirrored call's bookkeeping waits for the primary's requests to pause:
# long enough to skip past a burst, short enough that a saturated server still
# mirrors (what the queue cannot hold then is dropped and counted).
QUIET_WAIT_S = 0.02
# The outcomes a shadow call's span marks as errors.
_FAILED = frozenset({CandidateStatus.ERROR, CandidateStatus.TIMEOUT, CandidateStatus.DROPPED})


@dataclass(frozen=True, slots=True)
class _Job:
    primary: ServedVersion
    inputs: Tensors
    outputs: Tensors
    primary_ms: float
    request_id: str | None
    at: float
    # The primary request's span context when it was traced: the shadow call's span links it.
    link: Any = None
    # The shadow call's own span context, made before a remote candidate is called so that
    # the call carries it as its traceparent: the candidate's spans join the call's trace.
    context: Any = None


class ShadowMirror:
    """Sends a sample of one model's answered requests to its candidate, and logs both."""

    def __init__(
        self,
        model: str,
        candidate: Candidate,
        settings: ShadowSettings,
        prediction_log: PredictionLog,
        activity: RequestActivity,
    ) -> None:
        self.model = model
        self.activity = activity
        self.candidate = candidate
        self.settings = settings
        self.log = prediction_log
        self.timeout_s = settings.timeout_ms / 1000.0
        # (primary version, candidate version, status) -> requests, for /metrics.
        self.counts: Counter[tuple[str, str, CandidateStatus]] = Counter()
        self.live = LiveComparison(settings.promotion.score_tolerance)
        self.candidate_latency = Histogram(LATENCY_BUCKETS)
        self.pausing = TimeoutPausing(
            settings.pause_after_timeouts, settings.pause_s, settings.max_pause_s
        )
        self._paused_error = (
            f"candidate paused after {settings.pause_after_timeouts} timeouts in a row"
        )
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=settings.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        self._closing = False
        self._random = random.Random()  # noqa: S311 - sampling, not security
        # Ids for requests that came without one: unique per server start, and a
        # counter instead of a uuid4 per record (a system call each).
        self._id_prefix = f"{uuid.uuid4().hex[:12]}-"
        self._ids = itertools.count()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    @property
    def ready(self) -> bool:
        """Whether mirrored requests reach the candidate now (it is ready, and not paused)."""
        return self.candidate.ready and not self.pausing.paused()

    def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._work(), name=f"keel-shadow-{self.model}-{i}")
            for i in range(self.settings.concurrency)
        ]

    # -- the request path ---------------------------------------------------------

    def offer(self, primary: ServedVersion, request: Decoded, outputs: Tensors, call: Call) -> None:
        """Called by the data plane once the primary's outputs exist; returns at once, never raises.

        The offer is taken on the loop's next turn, after the handler's answer has
        been written: sampling, the queue and the log record it may need (a drop)
        stay off the primary's own latency, which is taken now.
        """
        primary_ms = (time.perf_counter() - call.received_at) * 1e3
        link = None if call.span is None else call.span.context
        asyncio.get_running_loop().call_soon(
            self._take, primary, request.inputs, outputs, primary_ms, request.request_id, link
        )

    def _take(
        self,
        primary: ServedVersion,
        inputs: Tensors,
        outputs: Tensors,
        primary_ms: float,
        request_id: str | None,
        link: Any = None,
    ) -> None:
        mirrored = (
            self._random.random() < self.settings.sample_rate
            and not self._closing
            and self.candidate.ready
            and primary.label != self.candidate.version
        )
        if not mirrored and self._random.random() >= self.settings.log_unmirrored_rate:
            return
        job = _Job(primary, inputs, outputs, primary_ms, request_id, time.time(), link)
        if not mirrored:
            self._record(job, CandidateStatus.UNMIRRORED)
            return
        if self.pausing.paused():
            # Dropped here rather than by a worker: no wake-up and quiet wait per request
            # for a candidate that is not being called.
            self._record(job, CandidateStatus.DROPPED, error=self._paused_error)
            return
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._record(job, CandidateStatus.DROPPED, error="shadow queue full")

    # -- the candidate side -------------------------------------------------------

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        while not self._closing:
            job = await self._queue.get()
            self._busy.add(me)
            try:
                await self._mirror(job)
            finally:
                self._busy.discard(me)
            # With jobs queued, neither the queue nor a quiet loop suspends: a backlog
            # (the one a pause leaves, say) would be drained in one go while requests
            # wait. One job per turn of the loop bounds their wait by one job's work.
            await asyncio.sleep(0)

    async def _mirror(self, job: _Job) -> None:
        # The call starts, and its outcome is booked, only while the primary is not
        # answering anyone; the candidate's latency is timed between the two waits.
        await self.activity.quiet(QUIET_WAIT_S)
        if self.pausing.paused():  # queued before the pause began
            self._record(job, CandidateStatus.DROPPED, error=self._paused_error)
            return
        traceparent = None
        if job.link is not None and self.candidate.kind == "remote" and tracing.ON:
            job = dataclasses.replace(job, context=tracing.new_context())
            traceparent = tracing.traceparent_of(job.context)
        started = time.perf_counter()
        try:
            decode = await self.candidate.call(job.inputs, self.timeout_s, traceparent)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            await self.activity.quiet(QUIET_WAIT_S)
            self._timed_out()
            self._record(
                job,
                CandidateStatus.TIMEOUT,
                elapsed_ms=(time.perf_counter() - started) * 1e3,
                error=f"no answer within {self.settings.timeout_ms:g} ms",
                started=started,
            )
            return
        except Exception as exc:  # noqa: BLE001 - whatever the candidate does is only counted
            elapsed_ms = (time.perf_counter() - started) * 1e3
            await self.activity.quiet(QUIET_WAIT_S)
            self._failed(job, exc, elapsed_ms, started)
            return
        elapsed_ms = (time.perf_counter() - started) * 1e3
        # The answer is decoded only now: a candidate that answers while a primary
        # request is being served must not cost that request the decoding.
        await self.activity.quiet(QUIET_WAIT_S)
        try:
            answer = decode()
        except Exception as exc:  # noqa: BLE001 - an unreadable answer is an error, counted
            self._failed(job, exc, elapsed_ms, started)
            return
        self._answered()
        self.candidate_latency.observe(elapsed_ms / 1e3)
        self.live.add(job.primary.metadata.signature.outputs, job.outputs, answer)
        self._record(job, CandidateStatus.OK, elapsed_ms=elapsed_ms, output=answer, started=started)

    def _failed(self, job: _Job, error: Exception, elapsed_ms: float, started: float) -> None:
        # Any answer, even an error, shows the candidate is alive: it ends a pause.
        self._answered()
        self._record(
            job,
            CandidateStatus.ERROR,
            elapsed_ms=elapsed_ms,
            error=f"{type(error).__name__}: {error}"[:1000],
            started=started,
        )

    def _timed_out(self) -> None:
        pause_s = self.pausing.timed_out()
        if pause_s is not None:
            log.warning(
                "shadow candidate %s of %s: %d timeouts in a row; calls paused for %g s",
                self.candidate.version,
                self.model,
                self.pausing.in_a_row,
                pause_s,
            )

    def _answered(self) -> None:
        if self.pausing.answered():
            log.info(
                "shadow candidate %s of %s answers again; mirroring resumed",
                self.candidate.version,
                self.model,
            )

    def _record(
        self,
        job: _Job,
        status: CandidateStatus,
        elapsed_ms: float | None = None,
        output: Tensors | None = None,
        error: str | None = None,
        started: float | None = None,
    ) -> None:
        """Count the outcome and log it; ``started``: when the candidate was called, if it was."""
        candidate_version = self.candidate.version
        self.counts[(job.primary.label, candidate_version or "", status)] += 1
        if job.link is not None and status is not CandidateStatus.UNMIRRORED:
            self._trace(job, status, started, elapsed_ms, error)
        rows = len(next(iter(job.outputs.values()))) if job.outputs else 0
        self.log.add(
            PredictionRecord(
                at=job.at,
                request_id=job.request_id or f"{self._id_prefix}{next(self._ids)}",
                model=self.model,
                primary_version=job.primary.label,
                candidate_version=candidate_version,
                rows=rows,
                status=status,
                primary_ms=job.primary_ms,
                primary_output=job.outputs,
                inputs=job.inputs,
                candidate_ms=elapsed_ms,
                candidate_output=output,
                error=error,
            )
        )

    def _trace(
        self,
        job: _Job,
        status: CandidateStatus,
        started: float | None,
        elapsed_ms: float | None,
        error: str | None,
    ) -> None:
        """The shadow call's span: a trace of its own, linked to the primary request's span,
        never its child, so the primary's trace ends when its answer does."""
        begun = time.perf_counter() if started is None else started
        span = tracing.linked_span(
            "keel.shadow",
            [job.link],
            begun,
            {
                "keel.model.name": self.model,
                "keel.model.version": job.primary.label,
                "keel.shadow.candidate": self.candidate.source,
                "keel.shadow.candidate_version": self.candidate.version or "",
                "keel.shadow.status": status.value,
            },
            job.context,
            # A call that went to another server is that call's client side.
            INTERNAL if job.context is None else CLIENT,
        )
        if span is None:
            return
        if error is not None:
            span.set_attribute("keel.shadow.error", error)
        failed = status.value if status in _FAILED else None
        ended = begun + (elapsed_ms or 0.0) / 1e3
        tracing.end_span(span, ended, None, failed)

    # -- shutdown -------------------------------------------------------------------

    async def close(self) -> None:
        """Stop mirroring: queued jobs are logged as dropped, running ones end by their timeout."""
        self._closing = True
        while not self._queue.empty():
            self._record(self._queue.get_nowait(), CandidateStatus.DROPPED, error="server stopping")
        idle = [t for t in self._workers if t not in self._busy]
        for task in idle:
            task.cancel()
        if not self._workers:
            await self.candidate.close()
            return
        # A running candidate call ends by its timeout; the worker then sees _closing.
        _, stuck = await asyncio.wait(self._workers, timeout=self.timeout_s + 1.0)
        for task in stuck:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        await self.candidate.close()
