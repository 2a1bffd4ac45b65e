"""RequestActivity: shadow bookkeeping waits for the primary's requests to pause, within a bound."""

from __future__ import annotations

import asyncio
import time

import uvloop

from keel.serving.activity import RequestActivity


def test_quiet_returns_at_once_when_no_request_is_in_progress() -> None:
    async def scenario() -> None:
        activity = RequestActivity()
        started = time.perf_counter()
        await activity.quiet(5.0)
        assert time.perf_counter() - started < 0.1

    uvloop.run(scenario())


def test_quiet_waits_for_the_last_request_in_progress_to_finish() -> None:
    async def scenario() -> None:
        activity = RequestActivity()
        activity.started()
        activity.started()
        waiting = asyncio.ensure_future(activity.quiet(5.0))
        await asyncio.sleep(0.01)
        activity.finished()
        await asyncio.sleep(0.01)
        assert not waiting.done()
        activity.finished()
        await asyncio.wait_for(waiting, 1.0)
        assert activity.active == 0

    uvloop.run(scenario())


def test_quiet_gives_up_after_its_bound_when_requests_never_pause() -> None:
    async def scenario() -> None:
        activity = RequestActivity()
        activity.started()
        started = time.perf_counter()
        await activity.quiet(0.05)
        assert 0.04 < time.perf_counter() - started < 1.0

    uvloop.run(scenario())
