"""The batcher's single deadline timer fails every late request on time, and only those."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import uvloop

from keel.serving.deadline_watch import DeadlineWatch


@dataclass
class _Request:
    deadline: float
    future: asyncio.Future[Any] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


class _Expired:
    def __init__(self) -> None:
        self.at: dict[int, float] = {}

    def __call__(self, request: _Request) -> None:
        self.at[id(request)] = asyncio.get_running_loop().time()
        request.future.set_exception(TimeoutError())


def _watching() -> tuple[asyncio.AbstractEventLoop, _Expired, DeadlineWatch]:
    loop = asyncio.get_running_loop()
    expired = _Expired()
    return loop, expired, DeadlineWatch(loop, expired)


def _run(coroutine: Any) -> Any:
    return uvloop.run(coroutine)


def test_requests_past_their_deadlines_expire_at_them_and_answered_ones_never_do() -> None:
    async def scenario() -> None:
        loop, expired, watch = _watching()
        start = loop.time()
        requests = [_Request(start + 0.02 * (i + 1)) for i in range(5)]
        for request in requests:
            assert watch.watch(request) is None  # rising deadlines share the one timer
        requests[1].future.set_result("answered")
        watch.forget_answered()
        await asyncio.sleep(0.2)
        assert id(requests[1]) not in expired.at
        for i in (0, 2, 3, 4):
            late_by = expired.at[id(requests[i])] - requests[i].deadline
            assert -0.002 <= late_by < 0.05, (i, late_by)

    _run(scenario())


def test_an_earlier_deadline_than_the_last_gets_its_own_timer_and_is_on_time() -> None:
    async def scenario() -> None:
        loop, expired, watch = _watching()
        slow = _Request(loop.time() + 5.0)
        quick = _Request(loop.time() + 0.02)
        assert watch.watch(slow) is None
        timer = watch.watch(quick)
        assert timer is not None
        await asyncio.sleep(0.15)
        assert id(quick) in expired.at
        assert id(slow) not in expired.at
        watch.close()

    _run(scenario())


def test_a_short_deadline_after_a_long_one_was_answered_rearms_the_timer_earlier() -> None:
    async def scenario() -> None:
        loop, expired, watch = _watching()
        long = _Request(loop.time() + 10.0)
        watch.watch(long)
        long.future.set_result("answered")
        watch.forget_answered()
        short = _Request(loop.time() + 0.02)
        assert watch.watch(short) is None
        await asyncio.sleep(0.15)
        assert id(short) in expired.at
        watch.close()

    _run(scenario())


def test_closing_the_watch_stops_its_timer() -> None:
    async def scenario() -> None:
        loop, expired, watch = _watching()
        request = _Request(loop.time() + 0.02)
        watch.watch(request)
        watch.close()
        await asyncio.sleep(0.1)
        assert expired.at == {}

    _run(scenario())


def test_many_answered_requests_do_not_pile_up_in_the_watch() -> None:
    async def scenario() -> None:
        loop, _, watch = _watching()
        for _ in range(1000):
            request = _Request(loop.time() + 10.0)
            watch.watch(request)
            request.future.set_result("answered")
            watch.forget_answered()
        assert len(watch._in_order) == 0
        watch.close()

    _run(scenario())
