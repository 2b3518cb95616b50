"""The injected clock: the only module of the simulator that reads the wall clock.

The simulator itself runs on *event time* (simulated seconds); a clock only paces how fast
event time is released (``speed`` × real time, or as fast as possible) and stamps progress.

>>> c = ManualClock(start=100.0)
>>> _ = c.sleep(2.5); c.monotonic()
102.5
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going backwards."""
        ...

    def wall(self) -> float:
        """Epoch seconds (UTC)."""
        ...

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Sleep ``seconds`` or until ``stop`` is set; returns ``True`` when stopped."""
        ...


class RealClock:
    """The process's real clocks."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if seconds <= 0:
            return bool(stop is not None and stop.is_set())
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)


class ManualClock:
    """A clock for tests: time moves only when somebody sleeps or calls :meth:`advance`."""

    def __init__(self, *, start: float = 0.0, wall_start: float = 1_767_571_200.0) -> None:
        self._t = float(start)
        self._wall0 = float(wall_start) - float(start)
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._t

    def wall(self) -> float:
        return self._wall0 + self._t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._t += seconds

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return True
        if seconds > 0:
            self.sleeps.append(seconds)
            self._t += seconds
        return bool(stop is not None and stop.is_set())
