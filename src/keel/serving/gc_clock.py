"""Seconds the garbage collector has run, so that a model run is not blamed for a collection.

A collection runs in whichever thread allocates when a generation fills up: on
the event loop's thread it can land inside an inline model run and take tens of
milliseconds (a full collection of a large heap) that are no fault of the model.
The batcher subtracts this clock's advance from what a run used before it judges
the run too slow for the loop.
"""

from __future__ import annotations

import gc
import time


class GcClock:
    """Wall seconds spent in collections since it was installed, on every thread."""

    __slots__ = ("_started", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        # Collections never nest and run with the GIL held: one start, then its stop.
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


GC_CLOCK = GcClock()


def install_gc_clock() -> GcClock:
    """Start ``GC_CLOCK`` counting (once per process) and return it."""
    if GC_CLOCK not in gc.callbacks:
        gc.callbacks.append(GC_CLOCK)
    return GC_CLOCK
