"""When to stop calling a shadow candidate that keeps timing out, and when to try it again.

A hung candidate costs the serving loop more than a slow one: every call is
abandoned at the timeout, its connection closed and a new one opened for the
next, while the queue holds requests seconds old. After a few timeouts in a row
the calls pause (the mirrored requests are logged as dropped, so the evidence
shows the gap); when the pause ends one call is tried, and each pause that ends
in another timeout is twice as long as the last, up to a bound. Any answer,
even an error, ends the pausing: only silence pauses.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TimeoutPausing:
    """Consecutive timeouts of one candidate, and the pause they have started, if any."""

    def __init__(
        self,
        after_timeouts: int,
        first_s: float,
        longest_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after_timeouts = after_timeouts
        self.first_s = first_s
        self.longest_s = longest_s
        self.clock = clock
        self.in_a_row = 0
        self.until = 0.0
        self._next_s = first_s

    def paused(self) -> bool:
        return self.clock() < self.until

    def remaining_s(self) -> float:
        """Seconds left of the current pause; 0 when calls are not paused."""
        return max(0.0, self.until - self.clock())

    def timed_out(self) -> float | None:
        """Count a timeout; the seconds of the pause it starts, if it starts one."""
        self.in_a_row += 1
        # A call that started before the pause began ends in it: it is counted, but
        # the pause was already decided on the evidence of the calls before it.
        if not self.after_timeouts or self.in_a_row < self.after_timeouts or self.paused():
            return None
        pause = self._next_s
        self.until = self.clock() + pause
        self._next_s = min(2 * pause, self.longest_s)
        return pause

    def answered(self) -> bool:
        """The candidate answered; True when that ends a run of pauses."""
        pausing = bool(self.after_timeouts) and self.in_a_row >= self.after_timeouts
        self.in_a_row = 0
        self.until = 0.0
        self._next_s = self.first_s
        return pausing
