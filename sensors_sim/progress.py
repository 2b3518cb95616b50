"""A small progress bar on stderr (for record and replay), paced by the injected clock."""

from __future__ import annotations

import sys
from typing import TextIO

from sensors_sim.clock import Clock, RealClock


def _si(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def _hms(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """``Progress(total=2880, what="ticks")``; call :meth:`update` often, :meth:`close` once.

    Redraws at most every ``every`` seconds; on a terminal it redraws one line, elsewhere
    (a log file) it prints a line every ``every * 10`` seconds.
    """

    def __init__(
        self,
        *,
        total: float | None,
        what: str = "ticks",
        stream: TextIO | None = None,
        clock: Clock | None = None,
        every: float = 0.5,
        enabled: bool = True,
    ) -> None:
        if every <= 0:
            raise ValueError(f"every must be > 0, got {every!r}")
        self.total = total
        self.what = what
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock or RealClock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every if self.tty else every * 10
        self.enabled = enabled
        self.t0 = self.clock.monotonic()
        self.last = -1e18
        self.done = 0.0
        self.readings = 0

    def update(self, done: float, *, readings: int = 0, force: bool = False) -> None:
        self.done = done
        self.readings = readings
        now = self.clock.monotonic()
        if not self.enabled or (not force and now - self.last < self.every):
            return
        self.last = now
        self.stream.write(("\r" if self.tty else "") + self.line(now) + ("" if self.tty else "\n"))
        self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.t0, 1e-9)
        rate = self.readings / elapsed
        parts = []
        if self.total:
            frac = min(self.done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            eta = (self.total - self.done) / (self.done / elapsed) if self.done else 0.0
            parts.append(
                f"[{bar:<30}] {frac * 100:5.1f}% {int(self.done)}/{int(self.total)} {self.what}"
            )
            parts.append(f"eta {_hms(eta)}")
        else:
            parts.append(f"{int(self.done)} {self.what}")
        parts.append(f"{_si(self.readings)} readings ({_si(rate)}/s) in {_hms(elapsed)}")
        return "  ".join(parts)

    def close(self) -> None:
        if self.enabled:
            self.update(self.done, readings=self.readings, force=True)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
