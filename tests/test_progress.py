"""The time-left estimate: steady at a steady pace, quiet while too early to tell."""
from __future__ import annotations

import pytest

from engine.progress import Eta, format_duration, with_time_left


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def steady(eta: Eta, clock: Clock, seconds: int, start: float = 0.0, done: float = 0.0, pace: float = 0.01):
    """Report `pace` more done each second for `seconds` seconds; the estimates, one a second."""
    estimates = []
    for second in range(1, seconds + 1):
        clock.now = start + second
        estimates.append(eta.update(done + second * pace))
    return estimates


def test_a_steady_pace_gives_the_true_time_left():
    estimates = steady(Eta(clock := Clock()), clock, 199, pace=1 / 200)
    assert estimates[:4] == [None] * 4  # too early to tell
    for second, left in enumerate(estimates[4:], start=5):
        assert left == pytest.approx(200 - second, rel=0.05, abs=1)


def test_a_slow_start_is_forgotten():
    """Reading the file took 60 s for 10 %; then 1 % a second: the estimate follows the recent pace."""
    clock = Clock()
    eta = Eta(clock)
    clock.now = 60.0
    eta.update(0.10)
    left = steady(eta, clock, 60, start=60.0, done=0.10)[-1]
    assert left == pytest.approx(30, abs=5)  # 30 % left at 1 % a second; the whole run's mean says 55


def test_the_estimate_does_not_jump_with_one_slow_step():
    clock = Clock()
    eta = Eta(clock)
    before = steady(eta, clock, 50)[-1]
    clock.now += 10  # one step took 10 s instead of 1
    after = eta.update(0.51)
    assert abs(after - before) < 0.5 * before


def test_a_stall_then_a_tiny_step_does_not_say_hours():
    """60 % in 140 s, a stall of 90 s (a stage without reports), then a step of 0.001 %: the
    window's rate alone would say about 10 hours; the estimate stays near the whole run's pace."""
    clock = Clock()
    eta = Eta(clock)
    steady(eta, clock, 140, pace=0.6 / 140)
    clock.now = 230.0
    left = eta.update(0.60001)
    assert left < 300  # the whole run's pace says about 150 s


def test_durations_read_as_a_person_says_them():
    assert format_duration(3) == "5 s"
    assert format_duration(44) == "45 s"
    assert format_duration(59) == "1 min"
    assert format_duration(80) == "1 min 20 s"
    assert format_duration(25 * 60) == "25 min"
    assert format_duration(3700) == "1 h 02 min"


def test_messages_carry_the_time_left():
    clock = Clock()
    seen = []

    class Parent:
        def progress(self, fraction, message):
            seen.append(message)

        def should_cancel(self):
            return True

    progress = with_time_left(Parent(), clock)
    progress.progress(0.0, "reading")
    clock.now = 30.0
    progress.progress(0.5, "training pass 3/6, mean loss 0.412")
    clock.now = 60.0
    progress.progress(1.0, "done")
    assert seen == ["reading", "training pass 3/6, mean loss 0.412, about 30 s left", "done"]
    assert progress.should_cancel()
