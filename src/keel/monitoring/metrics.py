"""The counters and histograms the server keeps per model version, cheap enough for every request.

A request to a small model costs about a hundred microseconds in all, so the
usual client-library pattern (a labelled child looked up under a lock, per
metric, per request) would be a visible share of it. keel keeps plain Python
numbers on each served version instead and turns them into Prometheus metric
families only when ``/metrics`` is scraped (``keel.monitoring.exposition``).

Every update happens on the event loop's thread (request handlers, and the
batcher's completion callback), so no lock is needed: the loop runs one
callback at a time and a scrape reads between them.

Warm-up requests (the server's own, over HTTP, before it reports ready) are not
traffic: while ``warming`` is set they are counted apart, by endpoint and status,
and nothing else (latency, refusals, batches, feature ages) sees them.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from keel.errors import (
    DeadlineExceeded,
    FieldError,
    InvalidName,
    InvalidRequest,
    NonFiniteOutput,
    NotReady,
    Overloaded,
    PayloadTooLarge,
    ProtocolError,
)
from keel.signature.freshness import FreshnessResult

# Seconds. Fine below 10 ms, where a small model's whole request lives, so a p99
# can be read there; coarse above, up to the default deadline and past it.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005,
    0.0065, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Seconds since a feature was computed: from a live lookup to a weekly batch job.
AGE_BUCKETS = (
    1, 5, 15, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400,
    2 * 86400, 7 * 86400, 30 * 86400,
)  # fmt: skip

# The field label of a validation failure is a declared feature or input name, or
# one of these: a client's unknown field names must never become series.
UNDECLARED_FIELD = "(undeclared)"
WHOLE_REQUEST = "(request)"


Exemplar = tuple[str, float, float]
"""A traced observation: its trace id, its value and when (Unix seconds)."""


class Histogram:
    """A Prometheus-style histogram: counts per upper bound, the sum, and the count."""

    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        # Per bucket, the last traced observation in it: (trace id, value, Unix time), for
        # an OpenMetrics exemplar. None until a traced request is observed.
        self.exemplars: list[Exemplar | None] | None = None

    def observe(self, value: float) -> None:
        # bisect_left puts a value equal to a bound in that bound's bucket (le semantics).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_traced(self, value: float, trace_id: str) -> None:
        """Observe ``value`` of a traced request: it becomes its bucket's exemplar."""
        slot = bisect_left(self.bounds, value)
        self.counts[slot] += 1
        self.sum += value
        if self.exemplars is None:
            self.exemplars = [None] * len(self.counts)
        self.exemplars[slot] = (trace_id, value, time.time())

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        """Observe a batch of values at once (NaN is not a value and is skipped)."""
        finite = values[~np.isnan(values)]
        if not finite.size:
            return
        slots = np.searchsorted(np.asarray(self.bounds), finite, side="left")
        for slot, count in enumerate(np.bincount(slots, minlength=len(self.counts)).tolist()):
            self.counts[slot] += count
        self.sum += float(finite.sum())

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs ending with ``+Inf``, as the exposition format wants."""
        total = 0
        buckets = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return buckets


def rejection_reason(error: Exception) -> str | None:
    """Why a request was refused, as the ``reason`` label says it; None for a server fault.

    A non-finite output is the model's fault, answered 500 like any other, but it is
    also a prediction withheld: it has a reason of its own, so that a model starting
    to answer NaN shows as such and not only as a share of 500s.
    """
    if isinstance(error, Overloaded):
        return "overloaded"
    if isinstance(error, DeadlineExceeded):
        return "deadline"
    if isinstance(error, PayloadTooLarge):
        return "too_large"
    if isinstance(error, InvalidRequest | ProtocolError | InvalidName):
        return "invalid"
    if isinstance(error, NotReady):
        return "not_ready"
    if isinstance(error, NonFiniteOutput):
        return "nonfinite_output"
    return None


class ServingMetrics:
    """What one model version's requests and batches did since it was loaded."""

    def __init__(self, declared_fields: Iterable[str]) -> None:
        self.declared_fields = frozenset(declared_fields)
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.rejected: Counter[str] = Counter()
        self.validation_failures: Counter[tuple[str, str]] = Counter()
        self.queue_wait = Histogram(LATENCY_BUCKETS)
        self.inference = Histogram(LATENCY_BUCKETS)
        self.batch_size = Histogram(BATCH_SIZE_BUCKETS)
        self.in_flight = 0
        self.feature_age: dict[str, Histogram] = {}
        self.stale: Counter[str] = Counter()
        self.warmup_requests: Counter[tuple[str, int]] = Counter()
        # Cumulative seconds behind the statistics extension (/v2/models/.../stats):
        # requests answered 200 and not, the time before and after the batcher of the
        # successful ones, and each request's share of model runs (a run's time counted
        # once for every request in its batch, as Triton counts compute_infer).
        self.success_s = 0.0
        self.fail_s = 0.0
        self.computed = 0
        self.compute_input_s = 0.0
        self.compute_output_s = 0.0
        self.compute_infer_requests = 0
        self.compute_infer_s = 0.0
        # time.time() of the last model run (None before the first).
        self.last_run_at: float | None = None
        # Set by self_warmup while the server sends its own requests; readiness is
        # false meanwhile, so no client's request should be among them.
        self.warming = False

    def answered(
        self, endpoint: str, status: int, seconds: float, trace_id: str | None = None
    ) -> None:
        """Count one answered request and its latency (a warm-up request only by status);
        ``trace_id``: the trace it is in when it was traced, the latency's exemplar."""
        if self.warming:
            self.warmup_requests[endpoint, status] += 1
            return
        self.requests[endpoint, status] += 1
        if status == 200:
            self.success_s += seconds
        else:
            self.fail_s += seconds
        latency = self.latency.get(endpoint)
        if latency is None:
            latency = self.latency[endpoint] = Histogram(LATENCY_BUCKETS)
        if trace_id is None:
            latency.observe(seconds)
        else:
            latency.observe_traced(seconds, trace_id)

    def refused(self, error: Exception) -> None:
        """Count a refusal by reason, and each field a validation failure named."""
        reason = rejection_reason(error)
        if reason is None or self.warming:
            return
        self.rejected[reason] += 1
        if isinstance(error, InvalidRequest):
            for failure in error.errors:
                self.validation_failures[self._field_label(failure), failure.rule] += 1

    def batch_done(self, rows: int, queue_waits: Iterable[float], run_seconds: float) -> None:
        """Count one model call: its rows, how long each request queued, how long it ran."""
        if self.warming:
            return
        self.batch_size.observe(rows)
        self.inference.observe(run_seconds)
        requests = 0
        for wait in queue_waits:
            self.queue_wait.observe(wait)
            requests += 1
        self.compute_infer_requests += requests
        self.compute_infer_s += run_seconds * requests
        self.last_run_at = time.time()

    def computed_request(self, input_seconds: float, output_seconds: float) -> None:
        """Count one successful request's time before the batcher and after it."""
        if self.warming:
            return
        self.computed += 1
        self.compute_input_s += input_seconds
        self.compute_output_s += output_seconds

    def freshness(self, result: FreshnessResult) -> None:
        """Observe the ages of one request's features and count the stale ones."""
        if self.warming:
            return
        for feature, ages in result.ages.items():
            histogram = self.feature_age.get(feature)
            if histogram is None:
                histogram = self.feature_age[feature] = Histogram(AGE_BUCKETS)
            histogram.observe_many(ages)
        self.stale.update(result.stale)

    def _field_label(self, failure: FieldError) -> str:
        if not failure.field:
            return WHOLE_REQUEST
        return failure.field if failure.field in self.declared_fields else UNDECLARED_FIELD
