"""Whether the server is answering requests right now, for work that should wait its turn.

Shadow mirroring shares the event loop with the primary's requests. Its
bookkeeping (comparing outputs, building log records, encoding a remote call)
cannot be interrupted once started, so it waits until no inference request is
in progress, up to a bound: under light load that costs the mirror nothing and
keeps it out of the primary's latency; under saturation the bound keeps it
moving, and its queue sheds what it cannot keep up with.
"""

from __future__ import annotations

import asyncio
import contextlib


class RequestActivity:
    """Counts inference requests in progress; ``quiet`` waits for there to be none."""

    def __init__(self) -> None:
        self.active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def started(self) -> None:
        self.active += 1
        if self.active == 1:
            self._idle.clear()

    def finished(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def quiet(self, at_most_s: float) -> None:
        """Return once no request is in progress, or after ``at_most_s`` seconds."""
        if self.active == 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                await self._idle.wait()
