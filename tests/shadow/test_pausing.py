"""TimeoutPausing: when calls to a candidate that keeps timing out pause, and for how long."""

from __future__ import annotations

import pytest

from keel.settings import ShadowSettings
from keel.shadow.pausing import TimeoutPausing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pausing(
    after: int = 3, first_s: float = 1.0, longest_s: float = 5.0
) -> tuple[TimeoutPausing, Clock]:
    clock = Clock()
    return TimeoutPausing(after, first_s, longest_s, clock), clock


def test_calls_pause_only_after_the_set_number_of_timeouts_in_a_row() -> None:
    p, _ = pausing(after=3)
    assert p.timed_out() is None
    assert p.timed_out() is None
    assert not p.paused()
    assert p.timed_out() == 1.0
    assert p.paused()
    assert p.remaining_s() == 1.0


def test_an_answer_between_timeouts_starts_the_count_again() -> None:
    p, _ = pausing(after=3)
    p.timed_out()
    p.timed_out()
    assert p.answered() is False
    assert p.timed_out() is None
    assert p.timed_out() is None
    assert p.in_a_row == 2
    assert not p.paused()


def test_each_pause_that_ends_in_a_timeout_doubles_up_to_the_longest() -> None:
    p, clock = pausing(after=1, first_s=1.0, longest_s=5.0)
    pauses = []
    for _ in range(5):
        pause = p.timed_out()
        assert pause is not None
        pauses.append(pause)
        clock.now += pause
        assert not p.paused()
    assert pauses == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_call_that_started_before_the_pause_does_not_lengthen_it() -> None:
    p, clock = pausing(after=2, first_s=1.0)
    p.timed_out()
    assert p.timed_out() == 1.0
    clock.now += 0.5
    # The other worker's call, started before the pause, times out within it.
    assert p.timed_out() is None
    assert p.remaining_s() == pytest.approx(0.5)
    clock.now += 0.5
    assert p.timed_out() == 2.0


def test_an_answer_ends_the_pausing_and_the_next_pause_is_the_first_again() -> None:
    p, clock = pausing(after=1, first_s=1.0)
    p.timed_out()
    clock.now += 1.0
    p.timed_out()
    clock.now += 2.0
    assert p.answered() is True
    assert p.in_a_row == 0
    assert p.timed_out() == 1.0


def test_zero_never_pauses() -> None:
    p, _ = pausing(after=0)
    for _ in range(100):
        assert p.timed_out() is None
    assert not p.paused()
    assert p.answered() is False


def test_the_longest_pause_may_not_be_shorter_than_the_first() -> None:
    with pytest.raises(ValueError, match=r"max_pause_s \(0.5\) must be at least pause_s \(1\)"):
        ShadowSettings(pause_s=1.0, max_pause_s=0.5)
