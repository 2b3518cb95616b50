"""Water and power indicators.

* **Minimum night flow** (MNF) per district metered area: the smallest window-mean inflow
  between ``night_start_h`` and ``night_end_h`` local time -- the classic leak indicator (at
  night legitimate demand is lowest, so a rising MNF means leakage). :class:`NightFlow` keeps
  the running minimum of the current night per sensor and reports it when the night ends.
* **Pressure deviation** from the time-of-day normal: ``(p - normal) / normal`` with the normal
  from the seasonal baseline.
* **Load factor** of a feeder: mean load / peak load over a period; **overload margin**:
  ``(rating - load) / rating`` (negative = overloaded).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from models.base import PerSensorState, check_range


def pressure_deviation(pressure: Any, normal: Any) -> np.ndarray:
    p = np.asarray(pressure, dtype=np.float64)
    n = np.asarray(normal, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (p - n) / n, np.nan)


def load_factor(mean_load: Any, peak_load: Any) -> np.ndarray:
    m = np.asarray(mean_load, dtype=np.float64)
    p = np.asarray(peak_load, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p > 0, m / p, np.nan)


def overload_margin(load: Any, rating: Any) -> np.ndarray:
    load_ = np.asarray(load, dtype=np.float64)
    r = np.asarray(rating, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r > 0, (r - load_) / r, np.nan)


class NightFlow(PerSensorState):
    """Minimum night flow per sensor from window means (event time, local clock).

    ``update(sensor, window_start, mean)`` takes closed windows; it returns the nights that
    ended: ``(sensor, night_date_ordinal, mnf)`` arrays. A night is identified by the local
    day on which it ends.
    """

    _state_arrays: ClassVar[tuple[str, ...]] = ("night", "mnf")

    def __init__(
        self,
        ids: Any,
        *,
        night_start_h: float = 2.0,
        night_end_h: float = 4.0,
        utc_offset_h: float = 0.0,
    ) -> None:
        self.night_start_h = check_range("night_start_h", night_start_h, 0, 24, hi_open=True)
        self.night_end_h = check_range("night_end_h", night_end_h, 0, 24, hi_open=True)
        if self.night_end_h <= self.night_start_h:
            raise ValueError(f"night_end_h must be > night_start_h, got {night_end_h!r}")
        self.utc_offset_h = check_range("utc_offset_h", utc_offset_h, -14, 14)
        self._init_ids(ids)
        n = len(self.ids)
        self.night = np.full(n, -1, dtype=np.int64)  # local day of the night being tracked
        self.mnf = np.full(n, np.nan)

    def params(self) -> dict[str, Any]:
        return {
            "night_start_h": self.night_start_h,
            "night_end_h": self.night_end_h,
            "utc_offset_h": self.utc_offset_h,
        }

    def update(
        self, sensor: np.ndarray, window_start: np.ndarray, mean: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        local = window_start + self.utc_offset_h * 3600.0
        day = np.floor(local / 86400.0).astype(np.int64)
        hour = (local - day * 86400.0) / 3600.0
        out_s: list[np.ndarray] = []
        out_d: list[np.ndarray] = []
        out_v: list[np.ndarray] = []
        # in order: a window after the night (same or later day) closes the tracked night
        for i in range(sensor.shape[0]):
            s, d, h, v = int(sensor[i]), int(day[i]), float(hour[i]), float(mean[i])
            tracked = self.night[s]
            if tracked >= 0 and (d > tracked or h >= self.night_end_h):
                out_s.append(np.array([s]))
                out_d.append(np.array([tracked]))
                out_v.append(np.array([self.mnf[s]]))
                self.night[s] = -1
                self.mnf[s] = np.nan
            if self.night_start_h <= h < self.night_end_h and not np.isnan(v):
                if self.night[s] != d:
                    self.night[s] = d
                    self.mnf[s] = v
                else:
                    self.mnf[s] = min(self.mnf[s], v)
        if not out_s:
            e = np.empty(0)
            return e.astype(np.int64), e.astype(np.int64), e
        return np.concatenate(out_s), np.concatenate(out_d), np.concatenate(out_v)
