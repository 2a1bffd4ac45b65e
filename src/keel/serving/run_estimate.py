"""How long one model run takes now: what a batcher refuses a too-close deadline by."""

from __future__ import annotations

import math

# The refusal estimate forgets a slow run at this rate while no run finishes, so a few
# slow runs cannot refuse short deadlines for long: 9 s of slow runs stop refusing
# 1,000 ms deadlines within 3.2 s; a refused request never runs, so never re-measures.
RUN_ESTIMATE_HALF_LIFE_S = 1.0


class RunTimeEstimate:
    """How long one model run takes now, for refusing deadlines sooner than that.

    The median of the last three runs, so one slow run (a pathological row) never
    moves it, each run counted at half its length for every ``RUN_ESTIMATE_HALF_LIFE_S``
    since it finished: refusals never run, so never measure, and must not keep a stale
    estimate alive; and a fast run after slow ones must not bring the slow ones back at
    full length. It errs toward running: a request the model cannot serve in time is
    still answered 504 at its deadline.
    """

    __slots__ = ("_ended", "_last", "_seconds", "median")

    def __init__(self) -> None:
        # Of the raw lengths: never below what ``expected`` says, so it can rule out a
        # refusal in one comparison.
        self.median = 0.0
        # The last three runs' lengths and when they ended, in a ring: ``record`` runs
        # once per batch on the loop, so it shifts nothing and sorts nothing.
        self._seconds = [0.0, 0.0, 0.0]
        self._ended = [0.0, 0.0, 0.0]
        self._last = -1

    def record(self, seconds: float, now: float) -> None:
        """Count a run of ``seconds`` that finished at ``now`` (time.perf_counter())."""
        lengths = self._seconds
        if self._last < 0:
            lengths[:] = (seconds, seconds, seconds)
            self._ended[:] = (now, now, now)
            self._last = 0
            self.median = seconds
            return
        last = self._last = (self._last + 1) % 3
        lengths[last] = seconds
        self._ended[last] = now
        self.median = _median(lengths[0], lengths[1], lengths[2])

    def expected(self, now: float) -> float:
        """Seconds a run is expected to take if it starts at ``now`` (time.perf_counter())."""
        faded = [
            seconds * math.pow(0.5, max(now - ended, 0.0) / RUN_ESTIMATE_HALF_LIFE_S)
            for seconds, ended in zip(self._seconds, self._ended, strict=True)
        ]
        return _median(*faded)


def _median(a: float, b: float, c: float) -> float:
    if a > b:
        a, b = b, a
    return a if c < a else b if c > b else c
