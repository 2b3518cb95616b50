"""Daily and weekly shapes of demand, as pure vectorised functions of local hour and weekday.

Every profile is dimensionless. Traffic peaks at 1.0 (weekday morning rush, inbound);
water demand has a minimum night flow; power follows the household/commercial day.
"""

from __future__ import annotations

import numpy as np


def _bump(h: np.ndarray, centre: float | np.ndarray, width: float | np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * ((h - centre) / width) ** 2)


def _smoothstep(h: np.ndarray, a: float, b: float) -> np.ndarray:
    x = np.clip((h - a) / (b - a), 0.0, 1.0)
    return x * x * (3 - 2 * x)


def daylight(h: np.ndarray) -> np.ndarray:
    """0 at night, 1 at solar noon (a fixed 06:00-18:00 day; good enough for ozone and mixing)."""
    return np.clip(np.sin(np.pi * (h - 6.0) / 12.0), 0.0, None)


def traffic(h: np.ndarray, weekday: np.ndarray, *, inbound: bool) -> np.ndarray:
    """Traffic demand shape in (0, 1]: morning and evening rush on weekdays (inbound heavier in
    the morning, outbound in the evening), a broad midday hump at weekends, a night minimum
    around 03:00-04:00 of about 3 % of the weekday peak."""
    am_w, pm_w = (0.42, 0.30) if inbound else (0.26, 0.42)
    day = 0.55 * _smoothstep(h, 5.5, 8.0) * (1.0 - _smoothstep(h, 19.0, 23.8))
    friday = np.where(weekday == 4, 1.1, 1.0)
    night = 0.025 + 0.035 * (1.0 - _bump(h, 3.5, 1.6))  # the late-evening tail, lowest ~03:30
    workday = night + day + am_w * _bump(h, 8.0, 1.0) + pm_w * friday * _bump(h, 17.5, 1.3)
    weekend = (
        night
        + 0.55 * _smoothstep(h, 7.5, 11.0) * (1.0 - _smoothstep(h, 20.0, 24.5))
        + 0.12 * _bump(h, 13.5, 2.0)
        + np.where(weekday == 5, 0.08, 0.0) * _bump(h, 23.0, 1.2)
    )
    return np.where(weekday >= 5, weekend, workday)


def water(h: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Water demand relative to the daily mean: minimum night flow ~0.4 at 03:00-04:00, a
    morning peak ~1.45 (07:30 weekdays, 09:30 weekends) and an evening peak ~1.3."""
    weekend = weekday >= 5
    am_c = np.where(weekend, 9.5, 7.5)
    am_w = np.where(weekend, 1.6, 1.1)
    return (
        0.36
        + 0.06 * (1.0 - _bump(h, 3.5, 1.6))
        + 0.55 * _smoothstep(h, 5.0, 8.0) * (1.0 - _smoothstep(h, 21.0, 24.5))
        + 0.5 * _bump(h, am_c, am_w)
        + 0.35 * _bump(h, 19.5, 1.6)
    )


def power(h: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    """Electric base load relative to the feeder's typical peak (cooling/heating come on top)."""
    weekend = weekday >= 5
    return (
        0.5
        + 0.25 * _smoothstep(h, 6.0, 9.0) * (1.0 - _smoothstep(h, 21.0, 24.5))
        + np.where(weekend, 0.05, 0.1) * _bump(h, 10.0, 2.0)
        + 0.2 * _bump(h, 19.0, 1.7)
    )


def heating_hours(h: np.ndarray) -> np.ndarray:
    """When domestic heating (a PM source) runs: mornings and evenings."""
    return 0.6 * _bump(h, 7.5, 1.5) + _bump(h, 20.0, 2.0)
