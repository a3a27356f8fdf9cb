"""Progress reporting and cancellation shared by the CLI, tests and the QGIS task."""
from __future__ import annotations

import time
from typing import Protocol

from .errors import Cancelled


class Progress(Protocol):
    def progress(self, fraction: float, message: str) -> None: ...

    def should_cancel(self) -> bool: ...


class NullProgress:
    def progress(self, fraction: float, message: str) -> None:
        pass

    def should_cancel(self) -> bool:
        return False


def check_cancel(progress: Progress | None) -> None:
    if progress is not None and progress.should_cancel():
        raise Cancelled("cancelled by the user")


class scaled:
    """Maps a sub-step's 0..1 onto [start, end] of the parent's progress."""

    def __init__(self, parent: Progress | None, start: float, end: float):
        self.parent = parent or NullProgress()
        self.start, self.end = start, end

    def progress(self, fraction: float, message: str) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        self.parent.progress(self.start + (self.end - self.start) * fraction, message)

    def should_cancel(self) -> bool:
        return self.parent.should_cancel()


def format_duration(seconds: float) -> str:
    """'45 s', '1 min 20 s', '12 min', '1 h 05 min': rounded so that a steady estimate reads steady."""
    seconds = max(0.0, float(seconds))
    if 5 * round(seconds / 5) < 60:
        return f"{max(5, 5 * round(seconds / 5)):.0f} s"
    if seconds < 600:
        minutes, rest = divmod(10 * round(seconds / 10), 60)
        return f"{minutes:.0f} min {rest:02.0f} s" if rest else f"{minutes:.0f} min"
    if seconds < 3600:
        return f"{round(seconds / 60):.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours:.0f} h {minutes:02.0f} min"


MIN_WINDOW_FRACTION = 0.01  # the recent rate needs at least 1 % of progress to go on


class Eta:
    """The time left, from the fraction done and the clock.

    The rate is measured over the recent stretch (the last third of the run, at least
    `window_s`), so a slow start such as reading the file does not skew it forever, and the
    estimate is smoothed so it does not jump with every step. None until there is enough to go on.
    """

    def __init__(self, clock=time.monotonic, min_seconds: float = 5.0, min_fraction: float = 0.02,
                 window_s: float = 30.0):
        self.clock, self.window_s = clock, window_s
        self.min_seconds, self.min_fraction = min_seconds, min_fraction
        self.started = clock()
        self.samples: list[tuple[float, float]] = []
        self.smoothed: float | None = None
        self._last = self.started  # when `smoothed` was last set

    def update(self, fraction: float) -> float | None:
        """Seconds left at `fraction` (0..1) done now, or None while too early to tell."""
        now, fraction = self.clock(), min(max(float(fraction), 0.0), 1.0)
        if self.samples and fraction < self.samples[-1][1]:
            self.samples.clear()  # went back: a new run of the same bar
            self.smoothed = None
        self.samples.append((now, fraction))
        elapsed = now - self.started
        if fraction >= 1.0:
            return 0.0
        if elapsed < self.min_seconds or fraction < self.min_fraction:
            return None
        window = max(self.window_s, elapsed / 3)
        while len(self.samples) > 2 and now - self.samples[1][0] >= window:
            self.samples.pop(0)
        t0, f0 = self.samples[0]
        if now - t0 < 1e-6 or fraction - f0 < MIN_WINDOW_FRACTION:
            # too little progress in the window (a stall, then a first tiny step: that rate would
            # say hours): fall back to the whole run
            t0, f0 = self.started, 0.0
        if fraction - f0 <= 0:
            return self.smoothed
        left = (1.0 - fraction) * (now - t0) / (fraction - f0)
        # a step can be slow or quick; let one report move the estimate only part of the way
        if self.smoothed is not None:
            left = 0.7 * (self.smoothed - (now - self._last)) + 0.3 * left
        self.smoothed = max(0.0, left)
        self._last = now
        return self.smoothed


class with_time_left:
    """A Progress that adds "about 1 min 20 s left" to each message it passes on to `parent`."""

    def __init__(self, parent: Progress | None, clock=time.monotonic):
        self.parent = parent or NullProgress()
        self.eta = Eta(clock)

    def progress(self, fraction: float, message: str) -> None:
        left = self.eta.update(fraction)
        if left is not None and fraction < 1.0 and message:
            message = f"{message}, about {format_duration(left)} left"
        self.parent.progress(fraction, message)

    def should_cancel(self) -> bool:
        return self.parent.should_cancel()
