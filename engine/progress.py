"""Progress reporting and cancellation shared by the CLI, tests and the QGIS task."""
from __future__ import annotations

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
